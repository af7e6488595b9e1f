"""CLI commands about people: ``monitor forget``, ``monitor rotate-secret`` and
``monitor access`` (a subject access report).

Thin skins over :mod:`monitor.enrich.erasure`. What they print names counts,
never a handle; the log line they write does not name the handle either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from monitor.cli import ConfigOption, console, fail, get_config, open_store, user_errors
from monitor.store.erasure import Forgotten

__all__ = ["register"]

_PLAIN: dict[str, Any] = {"highlight": False, "soft_wrap": True}


def _describe(result: Forgotten, what: str, keep_posts: bool, deletions: str) -> str:
    if result.matched == 0:
        if result.blocked:
            return (f"nothing stored matches {what}; nothing removed; later posts of this "
                    "author will not be stored")
        return f"nothing stored matches {what}; nothing removed"
    if keep_posts:
        return (f"{result.unlinked} of {result.matched} posts of {what} unlinked from their "
                "author (posts kept, author set to NULL)")
    counts = ("subtracted from the 5-minute counts (privacy.deletions: recount)"
              if result.recounted else
              "still counted in the 5-minute counts (privacy.deletions: keep)")
    blocked = ("; later posts of this author will not be stored (only the keyed pseudonym "
               "is kept for that)" if result.blocked else "")
    return (f"removed {result.removed} posts of {what} with their tags, text and author; "
            f"recorded as deleted so they are not stored again; {counts}{blocked}")


@user_errors
def forget_command(
    author: Annotated[str | None, typer.Option(
        "--author", help="the handle as the platform gives it (Mastodon user@instance, "
                         "Bluesky DID)")] = None,
    platform: Annotated[str | None, typer.Option(
        "--platform", "-p", help="the author's platform (required with --author)")] = None,
    post: Annotated[str | None, typer.Option("--post", help="a post's URL or key")] = None,
    keep_posts_anonymous: Annotated[bool, typer.Option(
        "--keep-posts-anonymous", help="keep the posts, only remove the author link")] = False,
    config: ConfigOption = None,
) -> None:
    """Erase one person's posts (--author H --platform P) or one post (--post URL|KEY)."""
    from monitor.arguments import platform_arg
    from monitor.enrich.erasure import forget_author, forget_post
    from monitor.status import configure_logging

    if (author is None) == (post is None):
        fail("give either --author HANDLE --platform P or --post URL|KEY", 2)
    if author is not None and platform is None:
        fail("--platform: required with --author (the same handle on two platforms is two "
             "people)", 2)
    if platform is not None:
        platform = platform_arg(platform)  # '' or 'two words' is a mistake, not a platform
    cfg = get_config(config)
    configure_logging(cfg.logging.level)
    engine = open_store(cfg)
    try:
        if author is not None:
            assert platform is not None
            result = forget_author(engine, cfg, platform, author,
                                   keep_posts=keep_posts_anonymous)
            what = f"this {platform.strip().lower()} author"
        else:
            assert post is not None
            result = forget_post(engine, cfg, post, platform=platform,
                                 keep_posts=keep_posts_anonymous)
            what = "this post reference"
    finally:
        engine.dispose()
    console.print(_describe(result, what, keep_posts_anonymous, cfg.privacy.deletions),
                  **_PLAIN)


@user_errors
def rotate_secret_command(
    new_secret_file: Annotated[Path | None, typer.Option(
        "--new-secret-file", help="keep the new key in this file (created with a random key "
                                  "when missing) instead of the database")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="authors per transaction")
                          ] = 1000,
    config: ConfigOption = None,
) -> None:
    """Re-key every stored author pseudonym with a new key; in batches, resumable."""
    from monitor.enrich.erasure import rotate_secret
    from monitor.locks import exclusive_run
    from monitor.status import configure_logging

    cfg = get_config(config)
    configure_logging(cfg.logging.level)
    # SQLite: the service's run lock, so neither starts while the other works
    with exclusive_run(cfg.database.url):
        engine = open_store(cfg)
        try:
            result = rotate_secret(
                engine, cfg, new_secret_file=new_secret_file, batch_size=batch_size,
                on_batch=lambda last, done: console.print(
                    f"re-keyed {done} authors (through post id {last})", **_PLAIN))
        finally:
            engine.dispose()
    finished = "finished the interrupted rotation" if result.resumed else "rotated"
    console.print(f"{finished}: author key version {result.version} (fingerprint "
                  f"{result.fingerprint}) is active; {result.rekeyed} authors re-keyed",
                  **_PLAIN)
    if result.external is not None:
        console.print(f"the new key is in {result.external}: set privacy.hash_secret_file to "
                      "that path (or privacy.hash_secret to its content) before the service "
                      "starts again", **_PLAIN)


@user_errors
def access_command(
    author: Annotated[str, typer.Option(
        "--author", help="the handle as the platform gives it (Mastodon user@instance, "
                         "Bluesky DID)")],
    platform: Annotated[str, typer.Option("--platform", "-p", help="the author's platform")],
    output_format: Annotated[str, typer.Option(
        "--format", help="text or json")] = "text",
    config: ConfigOption = None,
) -> None:
    """What the database holds about one person (a subject access request)."""
    import json

    from monitor.arguments import platform_arg
    from monitor.enrich.erasure import access_report
    from monitor.status import configure_logging

    if output_format not in ("text", "json"):
        fail(f"--format: expected text or json, got {output_format!r}", 2)
    platform = platform_arg(platform)
    cfg = get_config(config)
    configure_logging(cfg.logging.level)
    engine = open_store(cfg)
    try:
        access = access_report(engine, cfg, platform, author)
    finally:
        engine.dispose()
    data = access.as_dict()
    if output_format == "json":
        console.print(json.dumps(data, indent=2), **_PLAIN)
        return
    r = access.report
    lines = [f"platform: {access.platform}",
             f"stored as: {_STORED_AS.get(access.authors_mode, access.authors_mode)}",
             f"pseudonym: {access.pseudonym or '(none: the database has no author key)'}",
             f"posts stored: {r.posts}"]
    if r.posts:
        lines += [f"time range: {data['first_post_at']} to {data['last_post_at']}",
                  f"posts with their text stored: {r.with_text}",
                  f"posts with their link stored: {r.with_link}",
                  "tags: " + ", ".join(f"#{tag} ({n})" for tag, n in r.tags)]
    lines.append("later posts blocked (forgotten): " + ("yes" if r.blocked else "no"))
    console.print("\n".join(lines), **_PLAIN)


_STORED_AS = {"hash": "keyed pseudonym (authors: hash)", "keep": "handle (authors: keep)",
              "drop": "not stored (authors: drop)"}


def register(app: typer.Typer) -> None:
    """Add ``forget``, ``rotate-secret`` and ``access`` to the ``monitor`` app (idempotent)."""
    known = {c.name for c in app.registered_commands}
    for name, fn in (("forget", forget_command), ("rotate-secret", rotate_secret_command),
                     ("access", access_command)):
        if name not in known:
            app.command(name)(fn)
