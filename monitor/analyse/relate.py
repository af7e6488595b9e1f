"""The counter-movement view: does tag B answer tag A, after how long, and in what tone?

Volume relation: the lag at which the two tags' hourly volumes correlate best,
and how sure that is, computed by :mod:`monitor.analyse.xcorr` (log scale, local
hour-of-day profile, differences, local noise level, prewhitening; a null that
keeps each series' autocorrelation).

Only the span where **both** tags have posts is correlated: from the later of
the two first hours with posts to the earlier of the two last ones. Hours
outside it are not zeros to correlate (a tag that did not exist yet, or was
not collected, says nothing about the other), and the one step from nothing to
20 posts/h would otherwise be the whole "relation". When that span is shorter
than :data:`MIN_SPAN_HOURS` or either tag has posts in fewer than
:data:`MIN_ACTIVE_HOURS` of its hours, no lag is estimated and the answer says
so (the co-occurrence and tone parts still answer).

Co-occurrence and tone: the share of posts carrying both tags, and for each
tag the mean VADER compound of its posts with and without the other tag. No
post is read: each tag's totals come from ``tag_buckets`` and the posts
carrying both from ``tag_pair_buckets`` (kept by ``write_batch`` in the same
transaction as the posts); "without" is the total minus "with". One statement
(:func:`monitor.store.relate.pair_rollups`) returns both hourly series and all
of these sums. The pair rollup pairs only the first 10 tags of a post
(``monitor.store.pairs.MAX_PAIR_TAGS``), so a tag-stuffed post whose 11th or
later tag is one of the two counts as "without".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine

from monitor.analyse.xcorr import (
    HOURS_PER_DAY,
    Crosscorrelation,
    FloatArray,
    cross_correlation,
    prepare,
)
from monitor.errors import InputError
from monitor.store.queries import align_range, data_extent
from monitor.store.relate import Totals, pair_rollups, split_from_posts

__all__ = [
    "MIN_ACTIVE_HOURS",
    "MIN_SPAN_HOURS",
    "Crosscorrelation",
    "Relation",
    "ToneSplit",
    "cross_correlation",
    "describe_lag",
    "describe_relation",
    "lag_convention",
    "prepare",
    "relate",
    "relation_dict",
    "tone_from_posts",
]

MIN_HOURS = 72  # fewer points than this cannot separate a lag from the daily rhythm
MIN_SPAN_HOURS = MIN_HOURS  # hours from the first to the last hour both tags have posts
MIN_ACTIVE_HOURS = 24  # hours with posts, of each tag, inside that span
# two years of hours: beyond that a range is clipped to the two tags' data, then refused
# (each hour is a float in several arrays; 999999999 days would be gigabytes)
MAX_HOURS = 2 * 366 * HOURS_PER_DAY


@dataclass(frozen=True, slots=True)
class ToneSplit:
    """One tag's posts split by whether they also carry the other tag."""

    tag: str
    other: str
    posts: int
    with_other: int
    without_other: int
    mean_with: float | None
    mean_without: float | None
    scored_with: int
    scored_without: int

    @property
    def difference(self) -> float | None:
        """Mean compound with minus without the other tag (None if either side is unscored)."""
        if self.mean_with is None or self.mean_without is None:
            return None
        return self.mean_with - self.mean_without


@dataclass(frozen=True, slots=True)
class Relation:
    tag_a: str
    tag_b: str
    since: datetime
    until: datetime
    posts_a: int
    posts_b: int
    posts_both: int
    xcorr: Crosscorrelation
    tone_a: ToneSplit
    tone_b: ToneSplit

    @property
    def share_both(self) -> float:
        """Posts carrying both tags among posts carrying either (Jaccard)."""
        either = self.posts_a + self.posts_b - self.posts_both
        return self.posts_both / either if either else 0.0

    @property
    def share_of_a(self) -> float:
        return self.posts_both / self.posts_a if self.posts_a else 0.0

    @property
    def share_of_b(self) -> float:
        return self.posts_both / self.posts_b if self.posts_b else 0.0


def _split(tag: str, other: str, total: Totals, both: Totals) -> ToneSplit:
    n_both, scored_both, csum_both = both.posts, both.scored, both.compound_sum
    scored_without = total.scored - scored_both
    return ToneSplit(
        tag=tag, other=other, posts=total.posts,
        with_other=n_both, without_other=max(total.posts - n_both, 0),
        mean_with=csum_both / scored_both if scored_both else None,
        mean_without=((total.compound_sum - csum_both) / scored_without
                      if scored_without > 0 else None),
        scored_with=scored_both, scored_without=max(scored_without, 0),
    )


def tone_from_posts(engine: Engine, tag: str, other: str, since: datetime,
                    until: datetime) -> ToneSplit:
    """The same split computed from posts alone (every post of *tag* joined to ``posts``).

    ``relate`` does not use it: it reads the rollups only. Kept as the raw-posts
    truth the tests and the benchmark compare the rollups with.
    """
    split = split_from_posts(engine, tag, other, since, until)
    (n_with, scored_with, mean_with) = split.with_other
    (n_without, scored_without, mean_without) = split.without_other
    return ToneSplit(
        tag=tag, other=other, posts=n_with + n_without,
        with_other=n_with, without_other=n_without,
        mean_with=mean_with, mean_without=mean_without,
        scored_with=scored_with, scored_without=scored_without,
    )


def relate(
    engine: Engine,
    tag_a: str,
    tag_b: str,
    since: datetime,
    until: datetime,
    *,
    max_lag: int = 48,
) -> Relation:
    """Relate two tags over ``[since, until)`` (widened to whole UTC hours)."""
    if tag_a == tag_b:
        raise InputError("relate", f"expected two different tags, got {tag_a!r} twice")
    if not 1 <= max_lag <= 24 * 14:
        raise InputError("max-lag", f"expected 1 to 336 hours, got {max_lag}")
    start, end = align_range(since, until, 3600)
    hours = int((end - start) / timedelta(hours=1))
    if hours > MAX_HOURS:
        start, end = _clip_to_data(engine, (tag_a, tag_b), start, end)
        hours = int((end - start) / timedelta(hours=1))
    if hours > MAX_HOURS:
        raise InputError("since", f"expected a range of at most {MAX_HOURS // 24} days, got "
                                  f"{hours // 24} days of data for #{tag_a} and #{tag_b}")
    if hours < MIN_HOURS:
        raise InputError("since", f"expected a range of at least {MIN_HOURS // 24} days "
                                  f"to relate two tags, got {hours} hours")
    data = pair_rollups(engine, tag_a, tag_b, start, end)
    xcorr = _lagged(data.volume_a, data.volume_b, start, max_lag, (tag_a, tag_b))
    total_a, total_b, both = data.total_a, data.total_b, data.both
    tone_a = _split(tag_a, tag_b, total_a, both)
    tone_b = _split(tag_b, tag_a, total_b, both)
    return Relation(
        tag_a=tag_a, tag_b=tag_b, since=start, until=end,
        posts_a=tone_a.posts, posts_b=tone_b.posts, posts_both=tone_a.with_other,
        xcorr=xcorr, tone_a=tone_a, tone_b=tone_b,
    )


def _lagged(va: FloatArray, vb: FloatArray, start: datetime, max_lag: int,
            tags: tuple[str, str]) -> Crosscorrelation:
    """The cross-correlation over the span where both tags have posts, or a note saying
    plainly why there is none."""
    tag_a, tag_b = tags
    hour = timedelta(hours=1)
    has_a, has_b = np.flatnonzero(va), np.flatnonzero(vb)
    if has_a.size == 0 or has_b.size == 0:
        missing = " and ".join(f"#{t}" for t, h in ((tag_a, has_a), (tag_b, has_b))
                               if h.size == 0)
        return Crosscorrelation((), (), None, None, 1.0, 0,
                                note=f"no posts of {missing} in this range",
                                active_a=int(has_a.size), active_b=int(has_b.size))
    lo = int(max(has_a[0], has_b[0]))
    hi = int(min(has_a[-1], has_b[-1])) + 1
    span = max(hi - lo, 0)
    span_since, span_until = start + lo * hour, start + max(hi, lo) * hour
    active_a = int(np.count_nonzero(va[lo:hi])) if span else 0
    active_b = int(np.count_nonzero(vb[lo:hi])) if span else 0
    if span < MIN_SPAN_HOURS or min(active_a, active_b) < MIN_ACTIVE_HOURS:
        where = (f"both have posts over {span} h ({span_since:%Y-%m-%d %H:%M} to "
                 f"{span_until:%Y-%m-%d %H:%M} UTC), #{tag_a} in {active_a} h of them and "
                 f"#{tag_b} in {active_b} h" if span else "never have posts in the same span")
        note = (f"too little data to judge a lag: #{tag_a} and #{tag_b} {where}; a lag needs "
                f"{MIN_SPAN_HOURS} h where both tags have posts and posts of each in at least "
                f"{MIN_ACTIVE_HOURS} of them")
        return Crosscorrelation((), (), None, None, 1.0, span, note=note,
                                span_since=span_since, span_until=span_until,
                                active_a=active_a, active_b=active_b)
    pa, pb = prepare(va[lo:hi], vb[lo:hi], first_hour=span_since.hour)
    x = cross_correlation(pa, pb, max_lag)
    return Crosscorrelation(x.lags, x.r, x.best_lag, x.best_r, x.band, span, x.p_value,
                            None, span_since, span_until, active_a, active_b)


def _clip_to_data(engine: Engine, tags: tuple[str, str], start: datetime, end: datetime
                  ) -> tuple[datetime, datetime]:
    """``[start, end)`` narrowed to the hours the tags have buckets in (at least MIN_HOURS)."""
    first, last = data_extent(engine, tags, start, end)
    if first is None or last is None:
        return align_range(end - timedelta(hours=MIN_HOURS), end, 3600)
    lo, hi = align_range(first, last + timedelta(seconds=1), 3600)
    if hi - lo < timedelta(hours=MIN_HOURS):
        lo = max(start, hi - timedelta(hours=MIN_HOURS))
        hi = min(end, lo + timedelta(hours=MIN_HOURS))
    return lo, hi


def relation_dict(rel: Relation) -> dict[str, Any]:
    """A Relation as plain JSON-ready data (also what /api/relate returns)."""
    x = rel.xcorr

    def tone(t: ToneSplit) -> dict[str, Any]:
        return {"tag": t.tag, "other": t.other, "posts": t.posts, "with_other": t.with_other,
                "without_other": t.without_other, "mean_with": t.mean_with,
                "mean_without": t.mean_without, "scored_with": t.scored_with,
                "scored_without": t.scored_without, "difference": t.difference}

    return {
        "tag_a": rel.tag_a, "tag_b": rel.tag_b,
        "since": rel.since.isoformat(), "until": rel.until.isoformat(),
        "posts_a": rel.posts_a, "posts_b": rel.posts_b, "posts_both": rel.posts_both,
        "share_both": rel.share_both, "share_of_a": rel.share_of_a, "share_of_b": rel.share_of_b,
        "best_lag_hours": x.best_lag, "best_r": x.best_r, "noise_band": x.band,
        "significant": x.significant, "p_value": x.p_value, "points": x.n,
        "span_since": x.span_since.isoformat() if x.span_since else None,
        "span_until": x.span_until.isoformat() if x.span_until else None,
        "active_hours_a": x.active_a, "active_hours_b": x.active_b, "note": x.note,
        "lags": list(x.lags), "r": list(x.r),
        "summary": describe_relation(rel), "convention": lag_convention(rel.tag_a, rel.tag_b),
        "tone_a": tone(rel.tone_a), "tone_b": tone(rel.tone_b),
    }


def lag_convention(tag_a: str, tag_b: str) -> str:
    """How to read the sign of a lag: a convention, not a finding."""
    return (f"Convention: a bar at +k h compares #{tag_a} with #{tag_b} k hours later "
            f"(a peak there: #{tag_b} moves after #{tag_a}); at −k h, #{tag_a} k hours later.")


def describe_relation(rel: Relation) -> str:
    """One sentence for people about *rel*'s volume lag (or why there is none)."""
    x = rel.xcorr
    if x.note is not None:
        return f"#{rel.tag_a} and #{rel.tag_b}: {x.note}"
    return describe_lag(rel.tag_a, rel.tag_b, x.best_lag, x.best_r, x.significant,
                        p_value=x.p_value)


def describe_lag(tag_a: str, tag_b: str, lag: int | None, r: float | None,
                 significant: bool, *, p_value: float | None = None) -> str:
    """One sentence for people: who follows whom, by how long, and how sure."""
    if lag is None or r is None:
        return f"#{tag_a} and #{tag_b}: no volume movement to compare"
    p = f", p={p_value:.2g}" if p_value is not None else ""
    if not significant:
        return (f"#{tag_a} and #{tag_b}: no lag stands out from unrelated series with the "
                f"same rhythm (strongest r={r:+.2f} at {lag:+d} h{p})")
    direction = "rises" if r > 0 else "falls"
    if lag == 0:
        together = "together" if r > 0 else "in opposite directions"
        return f"#{tag_a} and #{tag_b} move {together} in the same hour (r={r:+.2f}{p})"
    if lag > 0:
        return f"#{tag_b} {direction} {lag} h after #{tag_a} moves (r={r:+.2f}{p})"
    return f"#{tag_a} {direction} {-lag} h after #{tag_b} moves (r={r:+.2f}{p})"
