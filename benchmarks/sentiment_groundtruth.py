"""Sentiment accuracy: the pipeline against VADER applied directly, on VADER's tweet ground truth.

Reads ``tweets_GroundTruth.txt`` from the VADER paper (Hutto & Gilbert 2014:
4,200 tweets, each with the mean rating of 20 human raters on -4..+4;
tab-separated id, rating, text; CRLF; no header), runs every text through
:class:`monitor.enrich.pipeline.Enricher` as a ``Post`` with no platform
language (so language detection runs, as for a Mastodon post with
``language: null``), and prints the Pearson correlation with the human ratings
for

  * the pipeline, over the tweets it scored (it leaves out texts it detects as
    another language, e.g. the Dutch and Turkish tweets in the set, and
    wordless texts without emoji);
  * vaderSentiment's stock analyzer applied directly to every text (reference);
  * the stock analyzer on exactly the tweets the pipeline scored, and the
    largest difference between pipeline and stock scores on those (0 means the
    pipeline's VADER is exactly VADER).

Run: ``.venv/bin/python -m benchmarks.sentiment_groundtruth [--data PATH]``.
The data is not copied into the repository. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from monitor.config import Config
from monitor.enrich.pipeline import Enricher
from monitor.models import Post

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / "../shared/data/vader_groundtruth/tweets_GroundTruth.txt"


def read_groundtruth(path: Path) -> list[tuple[str, float, str]]:
    """``(id, mean human rating, text)`` rows; a malformed line is an error naming it."""
    rows: list[tuple[str, float, str]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("\t", 2)
            if len(parts) != 3:
                raise SystemExit(f"{path}:{number}: expected id<TAB>rating<TAB>text")
            try:
                rating = float(parts[1])
            except ValueError:
                raise SystemExit(f"{path}:{number}: rating {parts[1]!r} is not a number") from None
            rows.append((parts[0], rating, parts[2]))
    return rows


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="tweets_GroundTruth.txt (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"{args.data}: file not found (pass --data PATH)", file=sys.stderr)
        return 2
    rows = read_groundtruth(args.data)
    now = datetime.now(UTC)
    posts = [Post(platform="file", key=row_id, created_at=now, text=text)
             for row_id, _, text in rows]

    with tempfile.TemporaryDirectory() as secret_dir:  # default config hashes authors
        enricher = Enricher.from_config(Config(), secret_dir=Path(secret_dir))
        scored = enricher.enrich_many(posts)
    stock = SentimentIntensityAnalyzer()
    direct = [stock.polarity_scores(text)["compound"] for _, _, text in rows]
    human = [rating for _, rating, _ in rows]

    kept = [i for i, s in enumerate(scored) if s.sentiment is not None]
    pipe = [scored[i].sentiment.compound for i in kept]  # type: ignore[union-attr]
    r_pipeline = pearson([human[i] for i in kept], pipe)
    r_direct = pearson(human, direct)
    r_direct_same = pearson([human[i] for i in kept], [direct[i] for i in kept])
    max_diff = max(abs(p - direct[i]) for p, i in zip(pipe, kept, strict=True))
    langs = Counter(s.lang or "undetermined" for s, r in zip(scored, rows, strict=True)
                    if s.sentiment is None)

    print(f"{len(rows)} tweets from {args.data.name}")
    print(f"pipeline (language detection on)     r = {r_pipeline:.4f}  over n = {len(kept)}")
    print(f"VADER applied directly (reference)   r = {r_direct:.4f}  over n = {len(rows)}")
    print(f"VADER directly, same {len(kept)} tweets   r = {r_direct_same:.4f}")
    print(f"difference pipeline - direct: {r_pipeline - r_direct:+.4f} (requirement: within "
          f"0.005); largest per-tweet score difference: {max_diff:.4f}")
    print("left unscored: " + ", ".join(f"{lang} {count}" for lang, count in langs.most_common()))
    print(json.dumps({"r_pipeline": round(r_pipeline, 4), "r_vader_direct": round(r_direct, 4),
                      "n": len(kept)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
