"""``monitor tags add|remove|list``: change the followed tags without a restart.

The changes are rows in the database (:mod:`monitor.store.followed`); a running
service applies them within one poll interval (:mod:`monitor.streams`), and a
service started later begins with them. config.yaml is never rewritten.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated

import typer

from monitor.cli import (
    ConfigOption,
    OutputFormat,
    console,
    emit_rows,
    get_config,
    open_store,
    user_errors,
)
from monitor.errors import InputError
from monitor.tags import normalise_tag

__all__ = ["register"]

tags_app = typer.Typer(help="Change the followed tags while the service runs (no restart).",
                       no_args_is_help=True)

TagsArgument = Annotated[list[str], typer.Argument(help="one or more tags, e.g. metoo")]


def _strict(raw: str) -> str:
    """A tag as the config accepts it: letters, digits or '_' after an optional '#'."""
    tag = normalise_tag(raw)
    whole = unicodedata.normalize("NFKC", raw).strip().lstrip("#＃").casefold()
    if not tag or tag != whole:
        raise InputError("TAG", f"expected a tag of letters, digits or '_', got {raw!r}")
    return tag


@tags_app.command("list")
@user_errors
def list_command(
    config: ConfigOption = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table, csv or json")] = (
        OutputFormat.table),
) -> None:
    """The followed tags: the config's, plus and minus the run-time changes."""
    from monitor.store.followed import effective_tags, read_changes

    cfg = get_config(config)
    engine = open_store(cfg)
    try:
        changes = read_changes(engine)
    finally:
        engine.dispose()
    followed = effective_tags(cfg.hashtags, changes)
    changed = {c.tag: c for c in changes}
    rows = []
    for tag in dict.fromkeys([*cfg.hashtags, *changed]):
        change = changed.get(tag)
        origin = "config" if tag in cfg.hashtags else "monitor tags add"
        rows.append({
            "tag": tag,
            "followed": tag in followed,
            "from": origin,
            "changed_at": change.changed_at.isoformat(timespec="seconds") if change else None,
            "change": change.state if change else None,
        })
    emit_rows(rows, fmt, title=f"{len(followed)} followed tags",
              columns=["tag", "followed", "from", "change", "changed_at"])


def _change(tags: list[str], follow: bool, config: ConfigOption) -> None:
    from monitor.store.followed import effective_tags, read_changes, set_followed

    wanted = list(dict.fromkeys(_strict(t) for t in tags))
    cfg = get_config(config)
    engine = open_store(cfg)
    try:
        before = effective_tags(cfg.hashtags, read_changes(engine))
        if not follow:
            missing = [t for t in wanted if t not in before]
            if missing:
                raise InputError("TAG", f"not followed: {', '.join(missing)} "
                                        f"(followed: {', '.join(before)})")
            if not [t for t in before if t not in wanted]:
                raise InputError("TAG", "cannot stop following every tag; add another first")
        now = datetime.now(UTC)
        for tag in wanted:
            set_followed(engine, tag, follow, now)
    finally:
        engine.dispose()
    verb = "following" if follow else "no longer following"
    already = [t for t in wanted if t in before] if follow else []
    note = f" ({', '.join('#' + t for t in already)} already followed)" if already else ""
    console.print(f"{verb} {', '.join('#' + t for t in wanted)}{note}; a running service "
                  "applies this within one poll interval", highlight=False, soft_wrap=True)


@tags_app.command("add")
@user_errors
def add_command(tags: TagsArgument, config: ConfigOption = None) -> None:
    """Follow TAGS from the next poll on (new streams start with their backfill)."""
    _change(tags, True, config)


@tags_app.command("remove")
@user_errors
def remove_command(tags: TagsArgument, config: ConfigOption = None) -> None:
    """Stop following TAGS (their posts stay; following again resumes from the cursor)."""
    _change(tags, False, config)


def register(app: typer.Typer) -> None:
    """Add ``monitor tags`` to the ``monitor`` app."""
    if "tags" not in {g.name for g in app.registered_groups}:
        app.add_typer(tags_app, name="tags")
