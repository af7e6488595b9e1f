"""A faithful reimplementation of the Numenta Anomaly Benchmark (NAB v1.1) scorer.

Follows NAB's ``nab/sweeper.py``: rows inside the probationary period (the first
``min(floor(0.15 N), 750)`` rows) are ignored; a detection inside a window
``[l, r]`` is worth ``sigma(-(r - i + 1) / w) * A_TP / sigma(-1)`` and only the
best (earliest) detection of a window counts; an undetected window costs
``A_FN``; every detection outside all windows costs ``A_FP`` scaled by how far
it is from the window that ended before it (``sigma(|r - i| / (w - 1))``), or
the full ``A_FP`` when no window has ended yet. Scores are normalised as
``100 * (raw - null) / (perfect - null)``.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PROFILES",
    "LabelledFile",
    "Profile",
    "load_corpus",
    "normalised",
    "probation_rows",
    "raw_score",
    "raw_score_sparse",
    "read_detector_scores",
    "scaled_sigmoid",
]


@dataclass(frozen=True, slots=True)
class Profile:
    """NAB cost weights (``config/profiles.json``)."""

    tp: float
    fp: float
    fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}


@dataclass(frozen=True, slots=True)
class LabelledFile:
    """One benchmark series with its anomaly windows as inclusive row indices."""

    name: str  # e.g. "realTweets/Twitter_volume_AAPL.csv"
    timestamps: tuple[str, ...]
    values: tuple[float, ...]
    windows: tuple[tuple[int, int], ...]


def scaled_sigmoid(y: float) -> float:
    """NAB's ``2 * sigmoid(-5 y) - 1``, pinned to -1 beyond three widths."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_rows(n: int) -> int:
    """Rows NAB ignores at the start of a file of *n* rows."""
    return min(math.floor(0.15 * n), int(0.15 * 5000))


def raw_score(
    detections: Sequence[bool], windows: Sequence[tuple[int, int]], profile: Profile
) -> float:
    """NAB's raw score of one file: window rewards plus false-positive costs.

    *detections* has one flag per row (``anomaly_score >= threshold``);
    *windows* are inclusive ``(first_row, last_row)`` pairs in row order.
    """
    n = len(detections)
    probation = probation_rows(n)
    ordered = sorted(windows)
    best: list[float | None] = [None] * len(ordered)
    fp_total = 0.0
    tp_norm = scaled_sigmoid(-1.0)
    w_idx = 0  # the first window that has not ended before row i
    for i in range(probation, n):
        while w_idx < len(ordered) and ordered[w_idx][1] < i:
            w_idx += 1
        if not detections[i]:
            continue
        inside = w_idx < len(ordered) and ordered[w_idx][0] <= i
        if inside:
            left, right = ordered[w_idx]
            width = right - left + 1
            value = scaled_sigmoid(-(right - i + 1) / width) * profile.tp / tp_norm
            current = best[w_idx]
            if current is None or value > current:
                best[w_idx] = value
        elif w_idx == 0:
            fp_total += -1.0 * profile.fp
        else:
            left, right = ordered[w_idx - 1]
            width = right - left + 1
            fp_total += scaled_sigmoid(abs(right - i) / (width - 1)) * profile.fp
    window_total = sum(-profile.fn if b is None else b for b in best)
    return window_total + fp_total


def raw_score_sparse(
    rows: Sequence[int], n: int, windows: Sequence[tuple[int, int]], profile: Profile
) -> float:
    """:func:`raw_score` from the detected row indices (ascending) of a file of *n* rows.

    The same arithmetic, but its cost grows with the detections, not the rows:
    a parameter search scores thousands of settings.
    """
    probation = probation_rows(n)
    ordered = sorted(windows)
    best: list[float | None] = [None] * len(ordered)
    fp_total = 0.0
    tp_norm = scaled_sigmoid(-1.0)
    w_idx = 0
    for i in rows:
        if i < probation or i >= n:
            continue
        while w_idx < len(ordered) and ordered[w_idx][1] < i:
            w_idx += 1
        if w_idx < len(ordered) and ordered[w_idx][0] <= i:
            left, right = ordered[w_idx]
            width = right - left + 1
            value = scaled_sigmoid(-(right - i + 1) / width) * profile.tp / tp_norm
            current = best[w_idx]
            if current is None or value > current:
                best[w_idx] = value
        elif w_idx == 0:
            fp_total += -1.0 * profile.fp
        else:
            left, right = ordered[w_idx - 1]
            width = right - left + 1
            fp_total += scaled_sigmoid(abs(right - i) / (width - 1)) * profile.fp
    window_total = sum(-profile.fn if b is None else b for b in best)
    return window_total + fp_total


def normalised(raw: float, n_windows: int, profile: Profile) -> float:
    """``100 * (raw - null) / (perfect - null)`` for a set holding *n_windows* windows."""
    null = -profile.fn * n_windows
    perfect = profile.tp * n_windows
    return 100.0 * (raw - null) / (perfect - null)


def _read_csv(path: Path) -> tuple[tuple[str, ...], tuple[float, ...]]:
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected a header 'timestamp,value', got {header!r}")
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                values.append(float(row[1]))
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{line_no}: expected a number in 'value'") from None
            stamps.append(row[0].strip())
    return tuple(stamps), tuple(values)


def _window_rows(
    name: str, stamps: Sequence[str], pairs: Sequence[Sequence[str]]
) -> tuple[tuple[int, int], ...]:
    index = {s: i for i, s in enumerate(stamps)}
    out: list[tuple[int, int]] = []
    for pair in pairs:
        ends: list[int] = []
        for stamp in pair:
            key = stamp.split(".")[0]
            if key not in index:
                raise ValueError(f"windows.json: {name}: window edge {stamp!r} is not a row")
            ends.append(index[key])
        out.append((ends[0], ends[1]))
    return tuple(sorted(out))


def load_corpus(data: Path) -> list[LabelledFile]:
    """Every ``*.csv`` in *data* or its subfolders that ``windows.json`` describes, by name."""
    windows_path = data / "windows.json"
    if not windows_path.exists():
        raise FileNotFoundError(f"{windows_path}: not found (NAB combined_windows.json)")
    raw_windows: Mapping[str, list[list[str]]] = json.loads(windows_path.read_text("utf-8"))
    by_base = {Path(k).name: (k, v) for k, v in raw_windows.items()}
    files: list[LabelledFile] = []
    for path in sorted(data.rglob("*.csv"), key=lambda p: p.name):
        if path.name not in by_base:
            continue
        name, pairs = by_base[path.name]
        stamps, values = _read_csv(path)
        files.append(LabelledFile(name, stamps, values, _window_rows(name, stamps, pairs)))
    files.sort(key=lambda f: f.name)
    return files


def read_detector_scores(path: Path) -> dict[str, list[float]]:
    """Per-row anomaly scores of the published detectors (``detector_scores/*.csv.gz``)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        names = header[2:]
        columns: dict[str, list[float]] = {n: [] for n in names}
        for row in reader:
            for name, cell in zip(names, row[2:], strict=True):
                columns[name].append(float(cell))
    return columns
