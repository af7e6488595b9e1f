"""Checks of command-line values, the same as the config's for the same kind of value.

Every command argument that names a tag, a platform or a duration goes through
one of these, so ``--tag 'bad tag'`` or ``--platform ''`` is a one-line error
naming the option (exit 2) in every command, instead of being quietly read as
``bad`` or as no platform. Time ranges (``--since``/``--until``) are checked by
:mod:`monitor.analyse.timerange`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from monitor.durations import parse_duration
from monitor.errors import InputError
from monitor.tags import strict_tag

if TYPE_CHECKING:
    from monitor.store.reading import Reader

__all__ = ["duration_arg", "known_tags", "platform_arg", "tag_arg", "tag_args"]

# what the collectors store: lower-case words such as twitter, mastodon, bluesky
_PLATFORM = re.compile(r"[a-z][a-z0-9_.-]{0,39}")


def tag_arg(raw: str, option: str) -> str:
    """*raw* as a tag (``#MeToo`` → ``metoo``); ``bad tag`` or ``''`` is an InputError."""
    try:
        return strict_tag(raw)
    except ValueError as exc:
        raise InputError(option, str(exc)) from None


def tag_args(values: Iterable[str], option: str) -> list[str]:
    """Each of *values* as a tag, in order, without repeats."""
    return list(dict.fromkeys(tag_arg(v, option) for v in values))


def platform_arg(raw: str, option: str = "--platform") -> str:
    """A platform name as stored (``Twitter`` → ``twitter``); InputError otherwise."""
    name = raw.strip().lower()
    if not _PLATFORM.fullmatch(name):
        raise InputError(option, "expected a platform name like 'twitter' or 'mastodon' (a "
                                 f"letter, then letters, digits, '.', '-' or '_'), got {raw!r}")
    return name


def duration_arg(raw: str, option: str, *, positive: bool = True) -> timedelta:
    """A duration such as ``30s``, ``5m``, ``2h``, ``7d``; zero only if not *positive*."""
    try:
        value = parse_duration(raw)
    except (ValueError, OverflowError):
        raise InputError(option, f"expected a duration like '30m', '2h' or '7d', "
                                 f"got {raw!r}") from None
    if positive and value <= timedelta(0):
        raise InputError(option, f"expected a duration above zero, got {raw!r}")
    return value


def known_tags(db: Reader, configured: Sequence[str], tags: Sequence[str], option: str,
               warn: Callable[[str], None]) -> None:
    """Check that each of *tags* is followed or has posts in the database.

    A tag that is neither (a typo, or a tag never collected) would give an empty
    table and exit 0; instead: a warning naming it when other tags are known, an
    InputError with the hint when none is.
    """
    from monitor.store.followed import effective_tags, read_changes
    from monitor.store.queries import data_extent

    followed = set(effective_tags(configured, read_changes(db)))
    unknown = [t for t in tags if t not in followed and data_extent(db, [t])[0] is None]
    if not unknown:
        return
    names = ", ".join(f"#{t}" for t in unknown)
    hint = (f"{names} {'is' if len(unknown) == 1 else 'are'} not followed and "
            f"{'has' if len(unknown) == 1 else 'have'} no posts in the database (followed: "
            f"{', '.join(sorted(followed)) or 'none'}); check the spelling, follow it with "
            f"'monitor tags add {unknown[0]}', or import posts that carry it")
    if len(unknown) == len(tags):
        raise InputError(option, hint)
    warn(f"warning: {option}: {hint}")
