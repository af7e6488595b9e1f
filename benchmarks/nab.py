"""The spike rule on the Numenta Anomaly Benchmark's realTweets series.

Every ``*.csv`` in ``--data`` (5-minute Twitter mention counts) is fed, point
by point and oldest first, to the service's own spike detector
(:class:`monitor.detect.seasonal.SpikeDetector` with the default
:class:`~monitor.detect.settings.SpikeRule` parameters), and the detector's
verdicts go through the service's alert lifecycle
(:func:`monitor.detect.lifecycle.step` with the rule's ``for``,
``resolve_after`` and ``rearm_after``). A NAB detection is a row where the
rule would page ("firing" announcement). Nothing is tuned per file and no
point sees the future.

The detections are scored with :mod:`monitor.detect.nab` (a faithful NAB
scorer). When ``--data`` also holds ``detector_scores/`` and
``nab_published_scores_per_file.csv``, every published detector is scored
with the same scorer at NAB's own thresholds and printed beside ours, with
NAB's own raw score as a check.

Run: ``.venv/bin/python -m benchmarks.nab --data ../shared/data/nab_realtweets
[--profile standard|reward_low_FP_rate|reward_low_FN_rate]``. The last line is
one JSON object: ``score`` (ours, normalised) and ``score_<detector>``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from monitor.detect.lifecycle import AlertState, Timing, step
from monitor.detect.nab import (
    PROFILES,
    LabelledFile,
    Profile,
    load_corpus,
    normalised,
    raw_score,
    read_detector_scores,
)
from monitor.detect.rules import spike_params
from monitor.detect.seasonal import SpikeDetector
from monitor.detect.settings import SpikeRule

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nab_realtweets"


def detect(file: LabelledFile, rule: SpikeRule) -> tuple[list[bool], list[float]]:
    """Our detections (rows where the rule pages) and per-row anomaly scores."""
    detector = SpikeDetector(spike_params(rule))
    timing = Timing(rule.for_, rule.repeat_interval, rule.resolve_after, rule.rearm_after)
    state = AlertState()
    flags: list[bool] = []
    scores: list[float] = []
    for stamp, value in zip(file.timestamps, file.values, strict=True):
        at = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
        verdict = detector.update(at, value)
        state, announcement = step(state, verdict.is_spike, at, timing)
        flags.append(announcement == "firing")
        scores.append(verdict.score)
    return flags, scores


def published(data: Path, corpus: list[LabelledFile], profile_name: str) -> dict[str, float]:
    """Raw score per published detector over *corpus*, at NAB's thresholds."""
    per_file = data / "nab_published_scores_per_file.csv"
    thresholds: dict[tuple[str, str], float] = {}
    nab_raw: dict[str, float] = defaultdict(float)
    with per_file.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["profile"] == profile_name:
                thresholds[(row["detector"], row["file"])] = float(row["threshold"])
                nab_raw[row["detector"]] += float(row["raw_score"])
    profile = PROFILES[profile_name]
    ours: dict[str, float] = defaultdict(float)
    for file in corpus:
        columns = read_detector_scores(data / "detector_scores" / (Path(file.name).name + ".gz"))
        for name, column in columns.items():
            threshold = thresholds.get((name, file.name))
            if threshold is None:
                continue  # e.g. "random": no published realTweets score to compare with
            ours[name] += raw_score([s >= threshold for s in column], file.windows, profile)
    for name, raw in ours.items():
        if abs(raw - nab_raw[name]) > 1e-6:
            print(f"warning: {name}: our scorer gives raw {raw:.6f}, NAB published "
                  f"{nab_raw[name]:.6f}", file=sys.stderr)
    return dict(ours)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="standard")
    args = parser.parse_args(argv)
    data: Path = args.data
    try:
        corpus = load_corpus(data)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not corpus:
        print(f"error: {data}: no CSV described by windows.json", file=sys.stderr)
        return 2
    profile: Profile = PROFILES[args.profile]
    n_windows = sum(len(f.windows) for f in corpus)
    rule = SpikeRule(name="nab")

    started = time.perf_counter()
    our_raw = 0.0
    rows = 0
    print(f"profile {args.profile}: {len(corpus)} files, {n_windows} windows "
          f"(A_TP {profile.tp}, A_FP {profile.fp}, A_FN {profile.fn})")
    print(f"{'file':<40} {'rows':>6} {'windows':>7} {'pages':>5} {'raw':>8}")
    for file in corpus:
        flags, _ = detect(file, rule)
        raw = raw_score(flags, file.windows, profile)
        our_raw += raw
        rows += len(flags)
        print(f"{file.name:<40} {len(flags):>6} {len(file.windows):>7} {sum(flags):>5} {raw:>8.3f}")
    elapsed = time.perf_counter() - started
    ours = normalised(our_raw, n_windows, profile)
    print(f"detector speed: {rows / elapsed:,.0f} points/s ({elapsed:.2f} s)")

    result: dict[str, float] = {"score": round(ours, 4)}
    has_published = (data / "detector_scores").is_dir() and (
        data / "nab_published_scores_per_file.csv"
    ).exists()
    board: list[tuple[str, float, float]] = [("hashtag-monitor spike", our_raw, ours)]
    if has_published:
        for name, raw in published(data, corpus, args.profile).items():
            board.append((name, raw, normalised(raw, n_windows, profile)))
    board.sort(key=lambda item: item[2], reverse=True)
    print()
    print(f"{'detector':<24} {'raw':>9} {'score':>7} {'ours - it':>9}")
    for name, raw, score in board:
        print(f"{name:<24} {raw:>9.3f} {score:>7.2f} {ours - score:>+9.2f}")
        if name != "hashtag-monitor spike":
            result[f"score_{name}"] = round(score, 4)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
