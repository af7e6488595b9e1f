"""Ingest throughput: enrichment + write_batch against VADER alone and two ORM writers.

Generates N realistic posts with a fixed seed (Mastodon-style HTML and
Bluesky-style plain text, mixed lengths, hashtags incl. Unicode ones, emoji,
links, mentions, eight languages, platform language on about half) and prints
posts/s for:

  (a) VADER alone: stock vaderSentiment ``polarity_scores`` on every post's
      plain text (the reference; monitor's exact, faster analyzer is shown too);
  (b) the pipeline: ``Enricher.enrich_many`` + ``write_batch`` in batches of
      ``--batch`` posts, on a fresh migrated SQLite file;
  (c) the same on a fresh PostgreSQL schema (dropped afterwards);
  (d) a naive loop: the same Enricher, then SQLAlchemy ORM ``add`` of the post,
      its tags and its bucket rows and one ``commit`` per post (SQLite,
      ``--naive-n`` posts);
  (e) a batched ORM write: the same ``enrich_many`` batches, then ORM
      ``add_all`` of the batch's posts, their tags and buckets (counted the
      simple way, as in (d)) and ONE commit per batch, on SQLite; (f) the same
      on PostgreSQL. Unlike (d), the ratio to these measures the write design,
      not the number of fsyncs;
  (g) for the breakdown: enrichment alone, without a database;
  (h) ``monitor import`` of the same posts as a JSONL file (read, parse, enrich,
      write, resumable cursor per batch) in one process, SQLite and PostgreSQL;
  (i) the same import with ``--workers`` processes parsing and enriching while
      one process writes in order (``monitor/importer.py``).

Each figure is the best of ``--rounds`` runs (each pipeline run on a fresh
database), because other processes on the machine can only slow a run down.
Model loading (py3langid, VADER lexicon; once per process) is not timed.

Run: ``.venv/bin/python -m benchmarks.ingest [--n 20000]``. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from monitor.config import Config, DatabaseSettings, PrivacySettings
from monitor.enrich.pipeline import Enricher
from monitor.enrich.sentiment import analyzer
from monitor.importer import IMPORT_BATCH
from monitor.models import Cursor, Post, StreamKey
from monitor.store.db import make_engine, migrate

try:
    from benchmarks.orm_writers import map_orm, store_batched, store_naive
except ModuleNotFoundError:  # run as a script (python benchmarks/ingest.py): no package
    from orm_writers import (  # type: ignore[import-not-found,no-redef]
        map_orm,
        store_batched,
        store_naive,
    )

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SEED = 20171015  # the day #MeToo went viral

# --------------------------------------------------------------------------- corpus

_EN = [
    "I never told anyone until today and I am so grateful for everyone who listened.",
    "This is exhausting. Every single day another story, and nothing changes.",
    "Proud of the women who spoke up, you are incredibly brave!",
    "Not all men? Sure. But enough of them that every woman I know has a story.",
    "I will check in on my friends more often and call out harassment when I see it.",
    "Honestly disgusted by the comments under this thread. Absolutely vile.",
    "Seven years on and the movement still matters.",
    "The panel was thoughtful, calm and surprisingly hopeful.",
    "Why is it so hard for people to just believe survivors?",
    "Great thread, thank you for writing this 🙏",
    "I'm furious. He got a promotion after all of this.",
    "Reading these stories at 2am and crying. Love to all of you ❤️",
    "The new law is a small step, but a real one.",
    "lol the replies are a dumpster fire",
    "This made my day, what a wonderful response from the community!",
    "Teaching my sons about consent starts at home.",
    "Terrible reporting from that outlet, again.",
    "We are not going anywhere.",
    "Happy to see the conversation shifting, finally.",
    "It is not okay. It was never okay.",
]
_OTHER: dict[str, list[str]] = {
    "de": [
        "Ich habe lange geschwiegen, aber heute erzähle ich meine Geschichte.",
        "Es ist unglaublich, wie wenig sich in den letzten Jahren verändert hat.",
        "Danke an alle, die zuhören und nicht wegschauen.",
    ],
    "fr": [
        "Je n'ai jamais osé en parler avant aujourd'hui, merci pour votre soutien.",
        "Cette affaire montre encore une fois que la justice est trop lente.",
        "Balance ton porc, c'était il y a des années et rien n'a changé.",
    ],
    "es": [
        "Hoy por fin me atreví a contar lo que me pasó en el trabajo.",
        "Es indignante que sigan culpando a las víctimas en los medios.",
        "Gracias a todas las que alzaron la voz, no están solas.",
    ],
    "pt": [
        "Nunca contei isso para ninguém, mas hoje decidi falar.",
        "É revoltante ver como as vítimas ainda são desacreditadas.",
    ],
    "it": [
        "Anche io ho una storia da raccontare, e oggi la racconto.",
        "Non è normale che nessuno abbia detto niente per anni.",
    ],
    "nl": [
        "Ik heb er nooit over gepraat, maar vandaag doe ik het wel.",
        "Het is schokkend hoe weinig er is veranderd sinds toen.",
    ],
    "ja": [
        "今日、初めて自分の経験について話すことにしました。",
        "被害者を責めるのはもうやめてほしい。",
    ],
}
_TAGS = ["MeToo", "metoo", "HowIWillChange", "NotAllMen", "IDidIt", "TimesUp", "BalanceTonPorc",
         "YoTambién", "QuellaVoltaChe", "MeTooインド", "Survivors", "WomensMarch"]
_EMOJI = ["❤️", "🙏", "💪", "😡", "😢", "✊", "🔥", "👏", ""]
_DOMAINS = ["mastodon.social", "mas.to", "hachyderm.io", "chaos.social", "mastodon.world"]


@dataclass(frozen=True, slots=True)
class Sample:
    post: Post
    plain: str  # the post's text as a reader sees it (what VADER alone scores)
    lang: str  # the language it was written in (the platform may not say)


def _link_html(url: str) -> str:
    scheme, rest = url.split("://", 1)
    shown, hidden = rest[:23], rest[23:]
    return (f'<a href="{url}" rel="nofollow noopener" target="_blank">'
            f'<span class="invisible">{scheme}://</span><span class="ellipsis">{shown}</span>'
            f'<span class="invisible">{hidden}</span></a>')


def generate(n: int, seed: int = SEED) -> list[Sample]:
    """*n* posts, deterministic for a seed: ~70 % English, the rest in 7 languages."""
    rnd = random.Random(seed)
    start = datetime(2025, 11, 20, tzinfo=UTC)
    out: list[Sample] = []
    for i in range(n):
        lang = "en" if rnd.random() < 0.7 else rnd.choice(sorted(_OTHER))
        pool = _EN if lang == "en" else _OTHER[lang]
        sentences = rnd.choices(pool, k=rnd.choice([1, 1, 1, 2, 2, 3, 4, 6]))
        tags = rnd.sample(_TAGS, k=rnd.choice([1, 1, 2, 2, 3, 5]))
        emoji = rnd.choice(_EMOJI)
        link = (f"https://{rnd.choice(_DOMAINS)}/@someone/{rnd.getrandbits(60)}"
                if rnd.random() < 0.25 else None)
        mention = f"@user{rnd.randrange(5000)}" if rnd.random() < 0.2 else None
        created = start + timedelta(seconds=rnd.randrange(3 * 86400))
        author = f"user{rnd.randrange(20000)}@{rnd.choice(_DOMAINS)}"
        body = " ".join(sentences) + (f" {emoji}" if emoji else "")
        tag_text = " ".join("#" + t for t in tags)
        parts = [p for p in (mention, body, link, tag_text) if p]
        plain = " ".join(parts)
        given_lang = lang if rnd.random() < 0.5 else None
        if rnd.random() < 0.6:  # Mastodon: sanitized HTML, tags also as metadata
            host = rnd.choice(_DOMAINS)
            paragraphs = [f"<p>{mention + ' ' if mention else ''}{sentences[0]}</p>"]
            paragraphs += [f"<p>{s}</p>" for s in sentences[1:]]
            if emoji:
                paragraphs[-1] = paragraphs[-1][:-4] + f" {emoji}</p>"
            if link:
                paragraphs.append(f"<p>{_link_html(link)}</p>")
            paragraphs.append("<p>" + " ".join(
                f'<a href="https://{host}/tags/{t}" class="mention hashtag" rel="tag">'
                f"#<span>{t}</span></a>" for t in tags) + "</p>")
            post = Post(platform="mastodon", key=f"https://{host}/users/u/statuses/{i}",
                        created_at=created, url=f"https://{host}/@u/{i}", author=author,
                        html="".join(paragraphs), lang=given_lang,
                        tags=tuple(t.lower() for t in tags))
        else:  # Bluesky: plain text, tags from facets
            post = Post(platform="bluesky", key=f"at://did:plc:bench{i}/app.bsky.feed.post/{i}",
                        created_at=created, author=author, text=plain,
                        lang=f"{given_lang}-US" if given_lang == "en" else given_lang,
                        tags=tuple(tags))
        out.append(Sample(post=post, plain=plain, lang=lang))
    return out


# --------------------------------------------------------------------------- runs

def _chunks(items: Sequence[Post], size: int) -> Iterator[Sequence[Post]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _config(url: str) -> Config:
    # hashing authors and storing text: the most work the pipeline can be asked to do
    return Config(database=DatabaseSettings(url=url),
                  privacy=PrivacySettings(authors="hash", store_text=True, hash_secret="bench"))


def run_vader(samples: Sequence[Sample], stock: bool = True) -> float:
    """Posts/s of VADER alone: stock vaderSentiment (the reference) or our FastAnalyzer."""
    score = SentimentIntensityAnalyzer().polarity_scores if stock else analyzer().polarity_scores
    start, cpu = time.perf_counter(), time.process_time()
    for sample in samples:
        score(sample.plain)
    if stock:
        CPU.setdefault("vader", []).append((time.process_time() - cpu) / len(samples))
    return len(samples) / (time.perf_counter() - start)


def run_enrich(samples: Sequence[Sample], batch: int) -> float:
    """Posts/s of enrich_many alone (no database), in batches like the pipeline."""
    enricher = Enricher.from_config(_config("sqlite://"))
    items = [s.post for s in samples]
    start = time.perf_counter()
    for chunk in _chunks(items, batch):
        enricher.enrich_many(chunk)
    return len(items) / (time.perf_counter() - start)


def run_pipeline(engine: Engine, samples: Sequence[Sample], batch: int) -> float:
    """Posts/s of enrich_many + write_batch; prints where the time went."""
    from monitor.store.write import write_batch

    enricher = Enricher.from_config(_config(str(engine.url)))
    stream = StreamKey(source="bench", endpoint="bench", tag="*")
    items = [s.post for s in samples]
    enriching = writing = 0.0
    start = time.perf_counter()
    for number, chunk in enumerate(_chunks(items, batch)):
        t0 = time.perf_counter()
        scored = enricher.enrich_many(chunk)
        t1 = time.perf_counter()
        write_batch(engine, scored, stream=stream,
                    cursor=Cursor(source="bench", stream=stream.name, value=str(number)))
        enriching += t1 - t0
        writing += time.perf_counter() - t1
    total = time.perf_counter() - start
    per_post = 1e6 / len(items)
    print(f"    {engine.dialect.name}: enrich {enriching * per_post:.1f} µs/post, write_batch "
          f"{writing * per_post:.1f} µs/post")
    return len(items) / total


def run_naive(engine: Engine, samples: Sequence[Sample]) -> float:
    map_orm()
    enricher = Enricher.from_config(_config(str(engine.url)))
    start = time.perf_counter()
    with Session(engine) as session:
        for sample in samples:
            store_naive(session, enricher.enrich(sample.post), datetime.now(UTC))
    return len(samples) / (time.perf_counter() - start)


def run_orm_batched(engine: Engine, samples: Sequence[Sample], batch: int) -> float:
    """Posts/s of enrich_many + the batched ORM writer, one commit per batch."""
    map_orm()
    enricher = Enricher.from_config(_config(str(engine.url)))
    items = [s.post for s in samples]
    start = time.perf_counter()
    with Session(engine) as session:
        for chunk in _chunks(items, batch):
            store_batched(session, enricher.enrich_many(chunk), datetime.now(UTC))
    return len(items) / (time.perf_counter() - start)


def write_jsonl(samples: Sequence[Sample], path: Path) -> None:
    """The samples as a native JSONL export (what `monitor import` reads)."""
    with path.open("w", encoding="utf-8") as handle:
        for sample in samples:
            post = sample.post
            handle.write(json.dumps({"key": post.key, "created_at": post.created_at.isoformat(),
                                     "text": post.text, "html": post.html, "url": post.url,
                                     "author": post.author, "lang": post.lang,
                                     "tags": list(post.tags)}) + "\n")


def run_import(engine: Engine, path: Path, platform_n: int, workers: int, batch: int) -> float:
    """Posts/s of ``import_file`` on *path*: read, parse, enrich, write, cursor per batch
    (*workers* 0: one process; else that many enrichment processes and this one writing)."""
    from monitor.importer import import_file

    config = _config(str(engine.url))
    enricher = Enricher.from_config(config)
    backends: set[int] = set()  # PostgreSQL: the server processes doing the writes
    engine.dispose()  # so that every connection of the import is a new one, and counted
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", lambda dbapi, _rec: backends.add(dbapi.info.backend_pid))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start, cpu = time.perf_counter(), time.process_time()
    summary = import_file(engine, config, path, "bench", enricher=enricher, workers=workers,
                          batch_size=batch)
    elapsed = time.perf_counter() - start
    assert summary.stored == platform_n, (summary.stored, platform_n)
    # CPU seconds of every process that took part: this one, the workers (reaped when
    # the pool shut down) and the server's backends (still open in the pool)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (time.process_time() - cpu + after.ru_utime + after.ru_stime
            - children.ru_utime - children.ru_stime + sum(map(_process_cpu, backends)))
    CPU.setdefault(f"{engine.dialect.name}_{workers}", []).append(used / platform_n)
    return platform_n / elapsed


# CPU seconds per post of the runs: "vader", and "<dialect>_<workers>" for the imports
CPU: dict[str, list[float]] = {}


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a local process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pg_schema() -> Iterator[str | None]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # PostgreSQL not running: report, keep the other figures
        print(f"PostgreSQL unavailable ({type(exc).__name__}); skipping (c)", file=sys.stderr)
        yield None
        return
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _best(label: str, rounds: int, fn: Callable[[], float]) -> float:
    """Best posts/s over *rounds* runs (other processes only ever slow a run down)."""
    rates = [fn() for _ in range(rounds)]
    best = max(rates)
    spread = ", ".join(f"{rate:,.0f}" for rate in rates)
    print(f"{label:<58} {best:>9,.0f} posts/s   (runs: {spread})")
    return best


def _sqlite_run(tmp: Path, fn: Callable[[Engine], float]) -> float:
    """Run *fn* on a fresh migrated SQLite file (a rerun must not hit duplicates)."""
    engine = make_engine(f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:8]}.db'}")
    migrate(engine)
    try:
        return fn(engine)
    finally:
        engine.dispose()


def _postgres_run(fn: Callable[[Engine], float]) -> float:
    """Run *fn* on a fresh migrated PostgreSQL schema, dropped afterwards (0 if no server)."""
    for url in _pg_schema():
        if url is None:
            return 0.0
        engine = make_engine(url)
        migrate(engine)
        try:
            return fn(engine)
        finally:
            engine.dispose()
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="posts to generate")
    parser.add_argument("--batch", type=int, default=500, help="posts per write_batch")
    parser.add_argument("--naive-n", type=int, default=2000, help="posts for the naive loop")
    parser.add_argument("--orm-n", type=int, default=0,
                        help="posts for the batched ORM writers (default: all --n)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--import-batch", type=int, default=IMPORT_BATCH,
                        help="records per batch of the file import (default: monitor import's)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="enrichment processes of the parallel import (default: cores)")
    args = parser.parse_args(argv)

    samples = generate(args.n, args.seed)
    # other processes on the machine slow every figure down: say how busy it was
    load_start = os.getloadavg()
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} "
          f"on {os.cpu_count()} cores")
    load = time.perf_counter()
    warm = Enricher.from_config(_config("sqlite://"))
    warm.enrich_many(s.post for s in generate(50, args.seed + 1))  # load both models once
    print(f"{args.n} posts, batch {args.batch}, best of {args.rounds} runs; models loaded in "
          f"{time.perf_counter() - load:.2f} s (once per process, not timed)")

    vader = _best("(a) VADER alone (stock vaderSentiment)", args.rounds,
                  lambda: run_vader(samples))
    _best("    for reference: monitor's FastAnalyzer alone", args.rounds,
          lambda: run_vader(samples, stock=False))
    enrich = _best("    enrichment alone (no database)", args.rounds,
                   lambda: run_enrich(samples, args.batch))
    naive_samples = samples[: args.naive_n]
    orm_samples = samples[: args.orm_n or args.n]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sqlite_rate = _best("(b) pipeline + write_batch, SQLite", args.rounds, lambda: _sqlite_run(
            tmp, lambda engine: run_pipeline(engine, samples, args.batch)))
        naive = _best(f"(d) naive ORM add+commit per post, SQLite (n={len(naive_samples)})",
                      args.rounds, lambda: _sqlite_run(
                          tmp, lambda engine: run_naive(engine, naive_samples)))
        orm = _best(f"(e) batched ORM, commit per batch, SQLite (n={len(orm_samples)})",
                    args.rounds, lambda: _sqlite_run(
                        tmp, lambda engine: run_orm_batched(engine, orm_samples, args.batch)))
        # the file import, end to end: one process, then workers enriching while this
        # process writes (monitor/importer.py)
        data = tmp / "import.jsonl"
        write_jsonl(samples, data)
        imports: dict[str, float] = {}
        vader_again: list[float] = []

        def vader_then_import(engine: Engine, workers: int) -> float:
            vader_again.append(run_vader(samples[:5000]))
            return run_import(engine, data, len(samples), workers, args.import_batch)

        for db_name, runner in (("sqlite", lambda fn: _sqlite_run(tmp, fn)),
                                ("postgres", _postgres_run)):
            for mode, workers in (("import", 0), ("import_parallel", args.workers)):
                label = (f"(h) import, one process, {db_name}" if not workers else
                         f"(i) import, {workers} workers + writer, {db_name}")
                # records per batch as `monitor import` does (importer.IMPORT_BATCH); VADER
                # again just before each run: the load of a shared machine drifts in minutes
                imports[f"{mode}_{db_name}"] = _best(
                    label, args.rounds, lambda run=runner, w=workers: run(  # type: ignore[misc]
                        lambda engine: vader_then_import(engine, w)))
    pg_rate = _best("(c) pipeline + write_batch, PostgreSQL", args.rounds, lambda: _postgres_run(
        lambda engine: run_pipeline(engine, samples, args.batch)))
    pg_orm = _best(f"(f) batched ORM, commit per batch, PostgreSQL (n={len(orm_samples)})",
                   args.rounds, lambda: _postgres_run(
                       lambda engine: run_orm_batched(engine, orm_samples, args.batch)))

    # the reference is VADER at its fastest in this run: (a), or one of the runs between
    # the imports (only ever raises it, so every ratio below is the conservative one)
    vader = max([vader, *vader_again])
    print(f"VADER reference: {vader:,.0f} posts/s, the best of (a) and {len(vader_again)} runs "
          "of 5,000 posts between the imports")
    result = {
        "posts_s_vader": round(vader, 1),
        "posts_s_sqlite": round(sqlite_rate, 1),
        "posts_s_postgres": round(pg_rate, 1),
        "posts_s_naive": round(naive, 1),
        "ratio_sqlite_vs_vader": round(sqlite_rate / vader, 3),
        "ratio_postgres_vs_vader": round(pg_rate / vader, 3),
        "ratio_sqlite_vs_naive": round(sqlite_rate / naive, 2),
        "posts_s_orm_batched": round(orm, 1),
        "posts_s_orm_batched_postgres": round(pg_orm, 1),
        "ratio_sqlite_vs_orm_batched": round(sqlite_rate / orm, 2),
        "ratio_postgres_vs_orm_batched": round(pg_rate / pg_orm, 2) if pg_orm else 0.0,
        "posts_s_enrich_only": round(enrich, 1),
        "ratio_enrich_only_vs_vader": round(enrich / vader, 3),
        "import_workers": args.workers,
        "load_avg_1m_start": round(load_start[0], 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "load_avg_5m": round(os.getloadavg()[1], 2),
        "cores": os.cpu_count() or 0,
    }
    for name, rate in imports.items():
        result[f"posts_s_{name}"] = round(rate, 1)
        result[f"ratio_{name}_vs_vader"] = round(rate / vader, 3)
    # CPU time, which other processes on the machine inflate far less than wall time: the
    # least CPU per post of any run of each, and what it allows on the import's cores
    vader_cpu = min(CPU["vader"])
    result["cpu_us_vader"] = round(vader_cpu * 1e6, 1)
    for db_name, dialect in (("sqlite", "sqlite"), ("postgres", "postgresql")):
        for mode, workers in (("import", 0), ("import_parallel", args.workers)):
            runs = CPU.get(f"{dialect}_{workers}")
            if runs:
                result[f"cpu_us_{mode}_{db_name}"] = round(min(runs) * 1e6, 1)
                result[f"cpu_bound_{mode}_{db_name}_vs_vader"] = round(
                    max(1, workers) * vader_cpu / min(runs), 3)
    print(f"pipeline/VADER: SQLite {result['ratio_sqlite_vs_vader']:.2f}x, PostgreSQL "
          f"{result['ratio_postgres_vs_vader']:.2f}x (target >= 0.7); pipeline/naive: "
          f"{result['ratio_sqlite_vs_naive']:.1f}x (target >= 10); enrichment alone/VADER: "
          f"{result['ratio_enrich_only_vs_vader']:.2f}x")
    print(f"pipeline/batched ORM (both commit once per batch): SQLite "
          f"{result['ratio_sqlite_vs_orm_batched']:.2f}x, PostgreSQL "
          f"{result['ratio_postgres_vs_orm_batched']:.2f}x")
    print(f"import/VADER: one process SQLite {result['ratio_import_sqlite_vs_vader']:.2f}x, "
          f"PostgreSQL {result['ratio_import_postgres_vs_vader']:.2f}x; {args.workers} workers + "
          f"writer SQLite {result['ratio_import_parallel_sqlite_vs_vader']:.2f}x, PostgreSQL "
          f"{result['ratio_import_parallel_postgres_vs_vader']:.2f}x (target >= 1.2); load "
          f"average {result['load_avg_1m']}")
    print(f"CPU per post (all processes, the PostgreSQL server's included): VADER "
          f"{result['cpu_us_vader']:.0f} µs; {args.workers} workers + writer SQLite "
          f"{result.get('cpu_us_import_parallel_sqlite', 0):.0f} µs, PostgreSQL "
          f"{result.get('cpu_us_import_parallel_postgres', 0):.0f} µs: on {args.workers} cores of "
          f"its own at most {result.get('cpu_bound_import_parallel_sqlite_vs_vader', 0):.2f}x and "
          f"{result.get('cpu_bound_import_parallel_postgres_vs_vader', 0):.2f}x VADER (an upper "
          "bound, not a measured rate)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
