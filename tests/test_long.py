"""Long forms, run by `make test-long` (not by `make test`)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from monitor.config import Config, DatabaseSettings
from monitor.enrich.pipeline import Enricher
from monitor.importer import import_file
from monitor.store.schema import posts, tag_buckets

REPO = Path(__file__).resolve().parent.parent
NAB = REPO.parent / "shared" / "data" / "nab_realtweets"

pytestmark = pytest.mark.long


# the search (21,600 settings, then the low-volume filter) takes about 4 CPU-minutes
@pytest.mark.timeout(1800)
def test_nab_out_of_sample_quality_does_not_regress() -> None:
    """The spike rule scored only on NAB files its parameters were not chosen on (README)."""
    other = NAB.parent / "nab_other"
    for data in (NAB, other):
        if not data.exists():
            pytest.fail(f"{data} is missing: the NAB data ships in shared/data beside the repo")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.nab", "--tweets", str(NAB), "--other", str(other)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    # out-of-sample floors a little under the measured 70.3 / 33.2 / 41.9 (README; the
    # detector before two windows had to agree: 51.4 / 32.6 / 33.9); the in-sample
    # figures are not floored: they say nothing about unseen series
    assert figures["score_tweets_public"] >= 67.0
    assert figures["score_nab_other"] >= 30.0
    assert figures["score_loco"] >= 39.0
    assert figures["both_score_loco"] >= 47.0  # the same detector judging drops too
    # the shipped defaults are what the documented procedure picks, and the service's
    # own path (is_spike + lifecycle.step) gives exactly the scored detections
    assert figures["defaults_agree"] == 1.0
    assert figures["service_path_identical"] == 1.0
    assert figures["points_per_s"] >= 20_000


def test_large_import_is_exact_and_idempotent(engine: Engine, tmp_path: Path) -> None:
    """100,000 posts through import: every post once, every bucket exact, twice adds nothing."""
    rng = random.Random(7)
    start = datetime(2017, 10, 15, tzinfo=UTC)
    path = tmp_path / "big.jsonl"
    expected: dict[tuple[str, datetime], int] = {}
    with path.open("w", encoding="utf-8") as out:
        for i in range(100_000):
            created = start + timedelta(seconds=rng.randrange(14 * 86400))
            tags = rng.sample(
                ["MeToo", "NotAllMen", "HowIWillChange", "TimesUp"], rng.randint(1, 3)
            )
            bucket = created - timedelta(seconds=int(created.timestamp()) % 300)
            for tag in tags:
                expected[(tag.lower(), bucket)] = expected.get((tag.lower(), bucket), 0) + 1
            out.write(
                json.dumps(
                    {
                        "id": str(i),
                        "created_at": created.isoformat(),
                        "lang": "en",
                        "text": f"post {i} " + " ".join("#" + t for t in tags),
                    }
                )
                + "\n"
            )
    config = Config(database=DatabaseSettings(url=str(engine.url)))
    enricher = Enricher.from_config(config, secret_dir=tmp_path)
    summary = import_file(engine, config, path, "twitter", enricher=enricher)
    assert (summary.stored, summary.rejected) == (100_000, 0)
    with engine.connect() as conn:
        got = {(r.tag, r.bucket_start): r.posts for r in conn.execute(select(tag_buckets))}
    assert got == expected
    again = import_file(engine, config, path, "twitter", enricher=enricher)
    assert again.stored == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(posts)).scalar_one() == 100_000
