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

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.durations import Duration
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
    """Volume far above the usual for this hour of day and day of week.

    Fires when the last ``smooth`` buckets average at least ``factor`` times
    the seasonal baseline, at least ``min_posts`` posts per bucket and
    ``min_z`` robust deviations above it, and higher than this tag's own
    recent surprises (``rarity`` quantile of the last ``rarity_days``, times
    ``rarity_margin``). A tag with less than ``min_history`` of data is
    reported as "insufficient history" and never fires.
    """

    kind: Literal["spike"] = "spike"
    factor: float = Field(default=4.0, gt=1.0)
    min_posts: float = Field(default=5.0, ge=0.0)
    min_z: float = Field(default=6.0, gt=0.0)
    smooth: int = Field(default=6, ge=1, le=288)
    baseline_days: int = Field(default=14, ge=1, le=60)
    min_history: Duration = timedelta(days=2)
    rarity: float = Field(default=0.995, ge=0.0, lt=1.0)
    rarity_days: int = Field(default=14, ge=1, le=60)
    rarity_margin: float = Field(default=1.3, ge=1.0)
    resolve_after: Duration = timedelta(hours=3)
    # a story that flares again within half a day is the same incident (one page);
    # a day-long guard also swallowed the next day's new story (NAB: 9h-15h best, see
    # the detect notes)
    rearm_after: Duration = timedelta(hours=12)


class SentimentShiftRule(RuleSettings):
    """Mean compound sentiment over ``window`` moved from its ``baseline`` mean.

    Needs at least ``min_scored`` scored posts in the window (and in the
    baseline), so a handful of angry posts at night does not page anyone.
    """

    kind: Literal["sentiment_shift"] = "sentiment_shift"
    window: Duration = timedelta(hours=1)
    baseline: Duration = timedelta(days=7)
    threshold: float = Field(default=0.25, gt=0.0, le=2.0)
    min_scored: int = Field(default=30, ge=1)
    direction: Literal["both", "down", "up"] = "both"


class EmergingCotagRule(RuleSettings):
    """A tag not followed yet whose share among a followed tag's posts grows fast.

    Share = posts carrying both tags / posts of the followed tag, over
    ``window``, compared with the same share over ``baseline`` before it.
    Fires when the share is at least ``min_share`` and ``growth`` times the
    baseline share, with at least ``min_posts`` co-tagged posts.
    """

    kind: Literal["emerging_cotag"] = "emerging_cotag"
    window: Duration = timedelta(hours=6)
    baseline: Duration = timedelta(days=7)
    min_share: float = Field(default=0.05, gt=0.0, le=1.0)
    growth: float = Field(default=3.0, gt=1.0)
    min_posts: int = Field(default=20, ge=1)
    max_candidates: int = Field(default=5, ge=1, le=100)
    ignore: list[str] = Field(default_factory=list)


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
