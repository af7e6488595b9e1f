"""The ``monitor`` console script: the core commands plus every registered command set.

:data:`COMMANDS` holds one :class:`CommandSet` per stage that adds
subcommands (each module's ``register(app)``). The built-ins are the tuple
below; an installed plugin adds a command set through the
``hashtag_monitor.commands`` entry-point group (see docs/extending.md). This
module, not :mod:`monitor.cli`, imports the command modules, because they
import :mod:`monitor.cli` for its helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import typer

from monitor import status, tag_commands
from monitor.analyse import commands as analyse
from monitor.cli import app, run
from monitor.detect import commands as detect
from monitor.enrich import commands as privacy
from monitor.notify import commands as notify
from monitor.registry import ENTRY_POINT_PREFIX, Registry

__all__ = ["COMMANDS", "CommandSet", "main", "register_all"]


@dataclass(frozen=True, slots=True)
class CommandSet:
    """Subcommands of one stage: ``register(app)`` adds them to the Typer app."""

    name: str
    register: Callable[[typer.Typer], None]


COMMANDS: Registry[CommandSet] = Registry(
    "command set",
    ENTRY_POINT_PREFIX + "commands",
    CommandSet,
    (
        CommandSet("analyse", analyse.register),
        CommandSet("status", status.register),
        CommandSet("notify", notify.register),
        CommandSet("detect", detect.register),
        CommandSet("privacy", privacy.register),
        CommandSet("tags", tag_commands.register),
    ),
)

# (app, command set) pairs already added: Typer would list a command twice
_done: set[tuple[int, str]] = set()


def register_all(target: typer.Typer = app) -> None:
    """Add every registered command set to *target* (once each)."""
    for command_set in COMMANDS:
        key = (id(target), command_set.name)
        if key not in _done:
            command_set.register(target)
            _done.add(key)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``monitor`` console script (and ``python -m monitor``)."""
    run(argv, setup=register_all)
