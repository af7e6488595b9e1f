"""The NAB scorer against hand-computed cases and against NAB's own published raw scores."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import pytest

from monitor.detect.nab import (
    PROFILES,
    load_corpus,
    normalised,
    probation_rows,
    raw_score,
    raw_score_sparse,
    read_detector_scores,
    scaled_sigmoid,
)

STANDARD = PROFILES["standard"]
N = 1000  # probation: floor(0.15 * 1000) = 150 rows
WINDOW = (400, 499)  # width 100
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nab_realtweets"


def flags(*rows: int) -> list[bool]:
    out = [False] * N
    for r in rows:
        out[r] = True
    return out


def test_sigmoid_and_probation_match_nab() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(math.tanh(2.5))
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.5) == -1.0
    assert probation_rows(N) == 150
    assert probation_rows(15902) == 750


def test_detection_on_the_first_row_of_the_window_earns_a_full_true_positive() -> None:
    assert raw_score(flags(400), [WINDOW], STANDARD) == pytest.approx(1.0)


def test_detection_on_the_last_row_of_the_window_earns_almost_nothing() -> None:
    # y = -(499 - 499 + 1) / 100 = -0.01 → tanh(0.025) / tanh(2.5)
    expected = math.tanh(0.025) / math.tanh(2.5)
    assert raw_score(flags(499), [WINDOW], STANDARD) == pytest.approx(expected)
    assert expected == pytest.approx(0.02533, abs=1e-5)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    assert raw_score(flags(450, 400, 480), [WINDOW], STANDARD) == pytest.approx(1.0)


def test_no_detection_costs_the_false_negative_weight() -> None:
    assert raw_score(flags(), [WINDOW], STANDARD) == pytest.approx(-1.0)
    assert raw_score(flags(), [WINDOW], PROFILES["reward_low_FN_rate"]) == pytest.approx(-2.0)


def test_false_positive_before_any_window_costs_the_full_fp_weight() -> None:
    assert raw_score(flags(200), [WINDOW], STANDARD) == pytest.approx(-1.0 - 0.11)
    assert raw_score(flags(200), [WINDOW], PROFILES["reward_low_FP_rate"]) == pytest.approx(
        -1.0 - 0.22)


def test_false_positive_just_after_a_window_costs_less_than_far_away() -> None:
    near = 0.11 * (2 / (1 + math.exp(5 * 50 / 99)) - 1)  # y = |499 - 549| / (100 - 1)
    assert raw_score(flags(400, 549), [WINDOW], STANDARD) == pytest.approx(1.0 + near)
    assert raw_score(flags(400, 900), [WINDOW], STANDARD) == pytest.approx(1.0 - 0.11)
    assert -0.11 < near < 0


def test_every_false_positive_row_counts_and_probation_rows_never_do() -> None:
    assert raw_score(flags(200, 201, 202), [WINDOW], STANDARD) == pytest.approx(-1.0 - 0.33)
    assert raw_score(flags(10, 149), [WINDOW], STANDARD) == pytest.approx(-1.0)


def test_normalisation_puts_null_at_zero_and_perfect_at_hundred() -> None:
    assert normalised(-16.0, 16, STANDARD) == 0.0
    assert normalised(16.0, 16, STANDARD) == 100.0
    assert normalised(46.634, 116, STANDARD) == pytest.approx(70.10, abs=0.01)
    assert normalised(-32.0, 16, PROFILES["reward_low_FN_rate"]) == 0.0


@pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} not present")
def test_reproduces_every_published_raw_score() -> None:
    corpus = {f.name: f for f in load_corpus(DATA)}
    published = list(csv.DictReader((DATA / "nab_published_scores_per_file.csv").open()))
    assert len(published) > 100
    columns = {
        name: read_detector_scores(DATA / "detector_scores" / (Path(name).name + ".gz"))
        for name in corpus
    }
    for row in published:
        file = corpus[row["file"]]
        scores = columns[row["file"]][row["detector"]]
        detections = [s >= float(row["threshold"]) for s in scores]
        got = raw_score(detections, file.windows, PROFILES[row["profile"]])
        assert got == pytest.approx(float(row["raw_score"]), abs=1e-9), row


OTHER = DATA.parent / "nab_other"


def test_sparse_scorer_equals_the_row_scorer() -> None:
    rng = random.Random(3)
    windows = [(300, 399), (520, 560), (800, 950)]
    for _ in range(200):
        rows = sorted(rng.sample(range(N), rng.randint(0, 40)))
        for profile in PROFILES.values():
            assert raw_score_sparse(rows, N, windows, profile) == pytest.approx(
                raw_score(flags(*rows), windows, profile), abs=1e-12)


@pytest.mark.skipif(not OTHER.exists(), reason=f"{OTHER} not present")
def test_loads_the_other_48_series_from_their_category_folders() -> None:
    corpus = load_corpus(OTHER)
    assert len(corpus) == 48
    assert sum(len(f.windows) for f in corpus) == 83
    assert {f.name.split("/")[0] for f in corpus} >= {"realKnownCause", "artificialNoAnomaly"}
