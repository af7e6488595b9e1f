"""Rejected import lines, grouped by reason.

A file whose 15,054 rows all carry the same unreadable date printed 15,054
identical lines. Now the first few lines of each reason are printed as they
come (``FILE:LINE: reason``), and at the end one count per reason. Two
rejections share a reason when they differ only in the values they quote and
the numbers they name (``got '10/15/2019 17:46'``, ``expected 8 columns, got 7``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from monitor.sources.files import Rejected

__all__ = ["SHOWN_PER_REASON", "RejectionReport", "reason_group"]

SHOWN_PER_REASON = 3
_VALUES = re.compile(
    # a quoted value, a hex byte, or a number that is not part of a name (ISO-8601)
    r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\b0x[0-9A-Fa-f]+\b|(?<![\w-])\d[\d,.]*")


def reason_group(reason: str) -> str:
    """*reason* with quoted values and numbers replaced by ``…``."""
    return _VALUES.sub("…", reason)


class RejectionReport:
    """Call it with each :class:`Rejected`; it emits the first *shown* of each reason.

    :meth:`summary` is the per-reason count, most frequent first.
    """

    def __init__(self, emit: Callable[[str], None], shown: int = SHOWN_PER_REASON) -> None:
        self._emit = emit
        self.shown = shown
        self.counts: dict[str, int] = {}

    def __call__(self, rejected: Rejected) -> None:
        group = reason_group(rejected.reason)
        count = self.counts.get(group, 0) + 1
        self.counts[group] = count
        if count <= self.shown:
            self._emit(str(rejected))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> list[str]:
        """``rejected lines by reason …`` then one ``COUNT  reason`` line per reason
        (nothing when every rejected line was shown)."""
        if not any(count > self.shown for count in self.counts.values()):
            return []  # every rejected line was printed already
        head = f"rejected lines by reason (the first {self.shown} of each are shown above):"
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return [head, *(f"  {count:>9,}  {group}" for group, count in ranked)]
