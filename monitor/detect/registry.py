"""Rule kinds: config.yaml ``rules[].kind`` → settings model and condition.

:data:`RULES` holds one :class:`RuleKind` per kind: its name (the ``kind:`` in
config), its settings model (a :class:`RuleSettings` subclass, which the
config's ``rules:`` union is built from) and the function that evaluates it.
The built-in kinds are the tuple below; an installed plugin adds one through the
``hashtag_monitor.rules`` entry-point group (see docs/extending.md).
:func:`evaluate_rule` dispatches by kind and has no default: a kind nobody
registered is an error, never another kind's check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from monitor.detect.rules import Finding, _cotag, _flatline, _sentiment, _spike
from monitor.detect.settings import (
    EmergingCotagRule,
    FlatlineRule,
    RuleContext,
    RuleSettings,
    SentimentShiftRule,
    SpikeRule,
)
from monitor.registry import ENTRY_POINT_PREFIX, Registry, require_tag

__all__ = ["RULES", "RuleKind", "evaluate_rule"]

R = TypeVar("R", bound=RuleSettings)


@dataclass(frozen=True, slots=True)
class RuleKind(Generic[R]):
    """One rule kind: ``kind:`` name, settings model, and its condition at an instant."""

    name: str
    settings: type[R]
    # reads the store on *conn* at *now* (UTC) and returns one Finding per alert candidate
    evaluate: Callable[[Connection, R, RuleContext, datetime], Sequence[Finding]]


def _check(kind: RuleKind[Any]) -> None:
    if not (isinstance(kind.settings, type) and issubclass(kind.settings, RuleSettings)):
        raise TypeError(f"rule kind {kind.name!r}: settings must subclass RuleSettings")
    require_tag(kind.settings, "kind", kind.name)


RULES: Registry[RuleKind[Any]] = Registry(
    "rule kind",
    ENTRY_POINT_PREFIX + "rules",
    RuleKind,
    (
        RuleKind("spike", SpikeRule, _spike),
        RuleKind("sentiment_shift", SentimentShiftRule, _sentiment),
        RuleKind("emerging_cotag", EmergingCotagRule, _cotag),
        RuleKind("flatline", FlatlineRule, _flatline),
    ),
    check=_check,
)


def evaluate_rule(
    conn: Connection, rule: RuleSettings, config: RuleContext, now: datetime
) -> list[Finding]:
    """The findings of one rule at *now* (UTC).

    Raises :class:`~monitor.registry.UnknownKind` for a kind that is not
    registered (the config cannot hold one, so this is a programming error).
    """
    return list(RULES.get(rule.kind).evaluate(conn, rule, config, now))
