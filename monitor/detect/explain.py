"""Why an alert fires, in numbers a person can check.

Every finding carries an explanation, stored with the alert under the
``explanation`` annotation and therefore in the outbox payload (MQTT sends it
as it is), the email and ``monitor alerts``:

* ``observed`` — the value judged, and what it is (``observed_what``);
* ``expected`` — what the baseline says it should be, with the baseline
  window it came from (``baseline_from`` / ``baseline_until``, ISO UTC);
* ``z`` and ``p_value`` — how surprising the observation is (None for a rule
  that is a plain threshold, such as a silent collector);
* ``params`` — the rule's own parameters (its kind's settings; the timing
  ``for``/``resolve_after`` too), so the alert can be reproduced.

Rule kinds that build their own (the shift rules) pass an
:class:`Explanation`; for any other kind :func:`fallback` derives one from the
finding's value, baseline, threshold and annotations, so a plugin rule's
alerts are explained too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from monitor.durations import format_duration

__all__ = ["Explanation", "describe", "fallback", "one_line", "rule_params"]

# timing parameters are the lifecycle's, shown with the kind's own
_BASE_FIELDS = {"kind", "name", "labels", "tags"}


def _plain(value: Any) -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def rule_params(rule: BaseModel) -> dict[str, Any]:
    """The rule's parameters as JSON-ready values (durations as "1h", "7d")."""
    out = {}
    for name, value in rule.model_dump(by_alias=True).items():
        if name in _BASE_FIELDS or value in ([], {}):
            continue
        out[name] = _plain(value)
    return out


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True, slots=True)
class Explanation:
    """What was observed, against what expectation from which window, how unusual, and why."""

    observed: float
    observed_what: str
    expected: float | None
    expected_what: str
    baseline_from: datetime | None
    baseline_until: datetime | None
    z: float | None
    p_value: float | None
    params: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            observed=_round(self.observed), expected=_round(self.expected),
            z=_round(self.z, 2), p_value=None if self.p_value is None else float(
                f"{self.p_value:.3g}"),
            baseline_from=_plain(self.baseline_from) if self.baseline_from else None,
            baseline_until=_plain(self.baseline_until) if self.baseline_until else None,
            params=dict(self.params),
        )
        return out


def fallback(
    rule: BaseModel, now: datetime, value: float, baseline: float | None,
    threshold: float | None, annotations: Mapping[str, Any],
) -> dict[str, Any]:
    """An explanation for a finding that brought none, from what every finding has."""
    params = rule_params(rule)
    since: datetime | None = None
    days = getattr(rule, "baseline_days", None)
    span = getattr(rule, "baseline", None)
    if isinstance(days, int):
        since = now - timedelta(days=days)
    elif isinstance(span, timedelta):
        since = now - span
    z = annotations.get("z")
    p = annotations.get("p_value")
    expected = baseline if baseline is not None else threshold
    what = "baseline" if baseline is not None else "threshold"
    return Explanation(
        observed=value, observed_what=str(annotations.get("observed_what", "value")),
        expected=expected, expected_what=what,
        baseline_from=since, baseline_until=now if since else None,
        z=float(z) if isinstance(z, int | float) else None,
        p_value=float(p) if isinstance(p, int | float) else None, params=params,
    ).as_dict()


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if value and abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".")


def _when(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return "?"
    return value[:16].replace("T", " ")


def describe(explanation: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The explanation as (label, text) lines for the email and the CLI."""
    if not isinstance(explanation, Mapping):
        return []
    e = explanation
    lines = [("Observed", f"{_num(e.get('observed'))} ({e.get('observed_what') or 'value'})")]
    expected = f"{_num(e.get('expected'))} ({e.get('expected_what') or 'baseline'})"
    if e.get("baseline_from"):
        expected += (f", from {_when(e.get('baseline_from'))} "
                     f"to {_when(e.get('baseline_until'))} UTC")
    lines.append(("Expected", expected))
    z, p = e.get("z"), e.get("p_value")
    if z is not None or p is not None:
        parts = []
        if z is not None:
            parts.append(f"z = {_num(z, 2)}")
        if p is not None:
            parts.append(f"tail probability {p:.2g}" if isinstance(p, int | float) else "")
        lines.append(("Surprise", ", ".join(x for x in parts if x)))
    else:
        lines.append(("Surprise", "not a statistical rule (a plain threshold)"))
    params = e.get("params")
    if isinstance(params, Mapping) and params:
        lines.append(("Parameters", " ".join(f"{k}={v}" for k, v in params.items())))
    return lines


def one_line(explanation: Mapping[str, Any] | None) -> str:
    """A compact form for a table cell: observed vs expected, z, p."""
    if not isinstance(explanation, Mapping):
        return ""
    e = explanation
    text = f"{_num(e.get('observed'))} vs {_num(e.get('expected'))}"
    if e.get("baseline_from"):
        text += f" ({_when(e.get('baseline_from'))}..{_when(e.get('baseline_until'))})"
    if e.get("z") is not None:
        text += f" z={_num(e.get('z'), 2)}"
    if isinstance(e.get("p_value"), int | float):
        text += f" p={e['p_value']:.2g}"
    return text
