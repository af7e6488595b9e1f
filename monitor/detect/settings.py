"""Alert rules as they appear under ``rules:`` in config.yaml.

Every rule has a ``name`` (unique), ``labels`` (added to each alert it
raises), ``for`` (how long the condition must hold before the alert fires),
``repeat_interval`` (how soon a firing alert may be announced again) and
``resolve_after`` (how long the condition must stay false before the alert
resolves). The ``kind`` selects the condition and its own parameters.

Each kind's model subclasses :class:`RuleSettings` and names itself in
``kind: Literal["…"]``; the config's ``rules:`` union is every model registered
in :data:`monitor.detect.registry.RULES`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, Protocol

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.durations import Duration, format_duration
from monitor.tags import normalise_tags

__all__ = [
    "EmergingCotagRule",
    "FlatlineRule",
    "RuleConfig",
    "RuleContext",
    "RuleSettings",
    "SentimentShiftRule",
    "SpikeRule",
]


class RuleContext(Protocol):
    """What a rule reads of the whole configuration (:class:`monitor.config.Config` is one).

    Rules see this, not ``Config``: the config's rule union is built from the
    registry that imports the rules, so they must not import the config.
    """

    @property
    def hashtags(self) -> list[str]: ...


class RuleSettings(BaseModel):
    """Base of every rule kind's settings; ``kind`` is the config's discriminator."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: str
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    labels: dict[str, str] = Field(default_factory=dict)
    for_: Duration = Field(default=timedelta(0), alias="for")
    repeat_interval: Duration = timedelta(hours=4)
    resolve_after: Duration = timedelta(minutes=15)
    # an episode that reopens within this time of its last announced firing
    # continues the same alert instead of paging again (flapping guard)
    rearm_after: Duration = timedelta(0)
    # tags this rule watches; empty means every followed hashtag
    tags: list[str] = Field(default_factory=list)

    @field_validator("tags")
    @classmethod
    def _normalise(cls, values: list[str]) -> list[str]:
        return normalise_tags(values)


class SpikeRule(RuleSettings):
    """Volume far above the usual for this tag (for this hour, when the tag has a rhythm).

    Judged over several windows at once: the last ``smooth`` buckets and each
    of ``windows`` (default 1 h, 2 h, 6 h). Fires when in one of them the posts
    are at least ``factor`` times the usual, at least ``min_posts`` per bucket
    and ``min_z`` deviations above it (the count model's tail: the exact
    Poisson tail of the window's total, or the tag's own noise when that is
    wider), when ``agree`` windows in all meet those criteria (the others with
    ``agree_z`` x ``min_z``: a lone 15-minute blip is not enough), and, if
    ``surprise`` is set (default 0: off), when that deviation is rare for this
    tag: its tail probability among the tag's own recent deviations is at most
    ``10 ** -surprise``. A tag with less than ``min_history`` of data is
    reported as "insufficient history" and never fires. The defaults were
    chosen on NAB's 53 public series by the procedure in the README
    ("Detector quality"), among the settings that meet the low-volume targets
    (benchmarks/lowcount.py); ``min_posts`` on the low-volume benchmark.
    """

    kind: Literal["spike"] = "spike"
    factor: float = Field(default=2.0, gt=1.0)
    min_posts: float = Field(default=1.0, ge=0.0)
    min_z: float = Field(default=3.5, gt=0.0)
    surprise: float = Field(default=0.0, ge=0.0, le=30.0)  # 0: off
    smooth: int = Field(default=3, ge=1, le=288)
    windows: list[Duration] = Field(
        default_factory=lambda: [timedelta(hours=1), timedelta(hours=2), timedelta(hours=6)])
    novelty: float | None = Field(default=0.0, ge=0.0)  # sensor-like series only
    # windows (of the shortest and ``windows``) that must each meet every criterion
    agree: int = Field(default=2, ge=1, le=8)
    # ... the others need only this fraction of min_z (1: all the full min_z)
    agree_z: float = Field(default=0.75, gt=0.0, le=1.0)
    baseline_days: float = Field(default=14.0, ge=1.0, le=60.0)
    history_days: float = Field(default=7.0, ge=1.0, le=60.0)
    min_history: Duration = timedelta(hours=48)
    resolve_after: Duration = timedelta(hours=3)
    # a story that flares again within hours of its page is the same incident (one page)
    rearm_after: Duration = timedelta(hours=6)


class SentimentShiftRule(RuleSettings):
    """Mean compound sentiment over ``window`` moved from its ``baseline`` mean
    by more than the data's own variation explains.

    The baseline is cut into window-long blocks; the recent mean's distance
    from the baseline mean is divided by its null spread (the per-post variance
    over the window's posts plus the hour-to-hour variance of window means, see
    :mod:`monitor.detect.shifts`). Fires at ``min_z`` or more in ``direction``,
    with at least ``min_scored`` scored posts in the window (and the baseline).
    ``min_shift`` (alias ``threshold``) optionally adds a floor on the size of
    the shift itself (0: none); it is not what decides significance.
    """

    kind: Literal["sentiment_shift"] = "sentiment_shift"
    window: Duration = timedelta(hours=1)
    baseline: Duration = timedelta(days=7)
    min_z: float = Field(default=4.5, gt=0.0)
    min_shift: float = Field(default=0.0, ge=0.0, le=2.0,
                             validation_alias=AliasChoices("min_shift", "threshold"))
    min_scored: int = Field(default=10, ge=1)
    direction: Literal["both", "down", "up"] = "both"

    @model_validator(mode="after")
    def _blocks(self) -> SentimentShiftRule:
        _check_blocks(self.window, self.baseline)
        return self


class EmergingCotagRule(RuleSettings):
    """A tag not followed yet whose share among a followed tag's posts grew beyond noise.

    Share = posts carrying both tags / posts of the followed tag over
    ``window``. It is tested against the share in window-long blocks of the
    ``baseline`` before it (a binomial test widened by the block-to-block
    variation, :mod:`monitor.detect.shifts`): fires at ``min_z`` or more, when
    the share is also at least ``min_share`` and ``growth`` times the baseline
    share, with at least ``min_posts`` co-tagged posts (floors on size, so one
    person repeating a tag four times does not page anyone).
    """

    kind: Literal["emerging_cotag"] = "emerging_cotag"
    window: Duration = timedelta(hours=2)
    baseline: Duration = timedelta(days=7)
    min_z: float = Field(default=5.0, gt=0.0)
    min_share: float = Field(default=0.05, ge=0.0, le=1.0)
    growth: float = Field(default=2.0, ge=1.0)
    min_posts: int = Field(default=10, ge=1)
    max_candidates: int = Field(default=5, ge=1, le=100)
    ignore: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _blocks(self) -> EmergingCotagRule:
        _check_blocks(self.window, self.baseline)
        return self


def _check_blocks(window: timedelta, baseline: timedelta) -> None:
    # the window is cut from 5-minute buckets and the baseline into window-long blocks
    if window < timedelta(minutes=5) or window.total_seconds() % 300:
        raise ValueError(f"window: expected a positive multiple of 5m, got {window}")
    # in seconds: 2 * window overflows timedelta for a window of 500000000d (found by fuzzing)
    if baseline.total_seconds() < 2 * window.total_seconds():
        raise ValueError(f"baseline: expected at least two windows "
                         f"({format_duration(window)} each), got {format_duration(baseline)}")


class FlatlineRule(RuleSettings):
    """A stream that normally yields posts has yielded none (or never succeeded) for ``silent_for``.

    Only streams that have collected at least ``min_collected`` posts in their
    life count as "normally yields posts".
    """

    kind: Literal["flatline"] = "flatline"
    silent_for: Duration = timedelta(hours=1)
    min_collected: int = Field(default=1, ge=0)
    sources: list[str] = Field(default_factory=list)  # empty: every source


# what config.py's ``rules:`` list holds, seen by a type checker
RuleConfig = RuleSettings
