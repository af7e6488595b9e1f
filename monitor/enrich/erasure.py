"""Erasure on request and key rotation: the library behind ``monitor forget`` and
``monitor rotate-secret``.

Forgetting an author matches every stored form of them: the handle itself (as
stored under ``privacy.authors: keep``, now or earlier) and its keyed pseudonym
(when the database has a key), so it works whatever the mode. It is logged
without the handle: the log line says how many posts of one author of which
platform were removed.

Rotation replaces the newest author key (see :mod:`monitor.enrich.privacy` for
the chain): a new key version is recorded in state ``rotating``, then the
stored authors are re-keyed in batches of ``posts.id`` order, each batch and
its progress committed together. A rotation that is killed resumes where it
stopped the next time ``monitor rotate-secret`` runs; until then nothing
writes or exports authors.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from monitor.config import Config
from monitor.enrich.post_keys import PostKeys, is_bluesky_handle_ref, original_key
from monitor.enrich.post_keys_convert import pseudonymise_existing
from monitor.enrich.privacy import (
    AuthorKey,
    fingerprint,
    is_pseudonym,
    load_or_create_secret_file,
    new_secret,
    resolve_key,
)
from monitor.errors import ConfigError, InputError
from monitor.store.erasure import Forgotten, forget_author_rows, forget_post_rows
from monitor.store.keys import finish_rotation, load_keys, rekey_batch, start_rotation
from monitor.store.pseudonyms import (
    AuthorReport,
    add_forgotten,
    author_report,
    rekey_deletions_batch,
    rekey_forgotten,
    stored_platforms,
)

__all__ = ["Access", "Rotation", "access_report", "forget_author", "forget_post",
           "rotate_secret"]

log = logging.getLogger("monitor.erasure")


def _recount(config: Config) -> bool:
    return config.privacy.deletions == "recount"


def forget_author(engine: Engine, config: Config, platform: str, handle: str, *,
                  keep_posts: bool = False) -> Forgotten:
    """Remove (or, with *keep_posts*, unlink) every stored post of one author."""
    handle = handle.strip()
    platform = platform.strip().lower()
    if not handle or not platform:
        raise InputError("--author", "expected a handle and --platform")
    forms = {handle, handle.removeprefix("@")}
    # a key is needed for the block list even under authors: keep (made on first use);
    # under drop no author is stored, so there is nothing to match now or later
    key = resolve_key(config, engine, create=config.privacy.authors != "drop")
    hashes = {key.pseudonym(platform, form) for form in forms} if key is not None else set()
    now = datetime.now(UTC)
    result = forget_author_rows(engine, platform, sorted(forms | hashes),
                                keep_posts=keep_posts, recount=_recount(config), now=now)
    # their later posts are not stored again: only the keyed pseudonym is kept for that
    block = bool(hashes) and config.privacy.authors != "drop"
    blocked = add_forgotten(engine, platform, hashes, now) if block else 0
    log.info("forget: %s of one %s author (%d posts matched)%s",
             f"{result.unlinked} posts unlinked" if keep_posts
             else f"{result.removed} posts removed", platform, result.matched,
             "; later posts blocked" if block else "")
    return replace(result, blocked=block, newly_blocked=blocked > 0)


def forget_post(engine: Engine, config: Config, ref: str, *, platform: str | None = None,
                keep_posts: bool = False) -> Forgotten:
    """Remove (or unlink the author of) the post whose key or URL is *ref*."""
    ref = ref.strip()
    if not ref:
        raise InputError("--post", "expected a post URL or key")
    platform = platform.strip().lower() if platform else None
    if platform in (None, "bluesky") and is_bluesky_handle_ref(ref):
        # the stored key holds the DID; resolving a handle needs the network, and a
        # guess would silently match nothing
        raise InputError("--post", "a Bluesky link with a handle cannot be matched offline; "
                         "pass the post's at:// uri (at://did:…/app.bsky.feed.post/RKEY) or its "
                         "link with the DID (https://bsky.app/profile/did:…/post/RKEY)")
    result = forget_post_rows(engine, ref, platform, keep_posts=keep_posts,
                              recount=_recount(config), now=datetime.now(UTC),
                              keys=sorted(_stored_forms(engine, config, ref, platform)))
    # the reference is not logged: a Mastodon or Bluesky URL names the author
    log.info("forget: %s (%d posts matched a post reference)",
             f"{result.unlinked} posts unlinked" if keep_posts
             else f"{result.removed} posts removed", result.matched)
    return result


@dataclass(frozen=True, slots=True)
class Access:
    """A subject access report: what the database holds about one author."""

    platform: str
    pseudonym: str | None  # the author as stored under authors: hash (None: no key)
    authors_mode: str
    report: AuthorReport

    def as_dict(self) -> dict[str, object]:
        r = self.report
        return {
            "platform": self.platform,
            "pseudonym": self.pseudonym,
            "authors_stored_as": self.authors_mode,
            "posts": r.posts,
            "first_post_at": r.first.isoformat() if r.first else None,
            "last_post_at": r.last.isoformat() if r.last else None,
            "posts_with_text": r.with_text,
            "posts_with_link": r.with_link,
            "tags": {tag: n for tag, n in r.tags},
            "later_posts_blocked": r.blocked,
        }


def access_report(engine: Engine, config: Config, platform: str, handle: str) -> Access:
    """What is stored about the author *handle* of *platform* (their posts only)."""
    handle = handle.strip()
    platform = platform.strip().lower()
    if not handle or not platform:
        raise InputError("--author", "expected a handle and --platform")
    forms = {handle, handle.removeprefix("@")}
    key = resolve_key(config, engine, create=False)
    hashes = {key.pseudonym(platform, form) for form in forms} if key is not None else set()
    report = author_report(engine, platform, forms | hashes, hashes)
    pseudonym = key.pseudonym(platform, handle.removeprefix("@")) if key is not None else None
    log.info("access: report on one %s author (%d posts)", platform, report.posts)
    return Access(platform, pseudonym, config.privacy.authors, report)


def _stored_forms(engine: Engine, config: Config, ref: str, platform: str | None) -> set[str]:
    """What the post *ref* (a key or a link) may be stored as: the platform key a link
    gives (Mastodon, Bluesky) and, when the database has a key, their pseudonyms."""
    platforms = [platform] if platform else stored_platforms(engine)
    refs = {ref} | {k for pl in platforms if (k := original_key(pl, ref)) is not None}
    key = resolve_key(config, engine, create=False)
    if key is None:
        return refs
    keys = PostKeys(key)
    return refs | {keys.stored(pl, r) for pl in platforms for r in refs}


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of ``rotate-secret``."""

    version: int  # the key version now active
    fingerprint: str
    rekeyed: int  # author values re-keyed by this run
    resumed: bool  # this run finished a rotation an earlier run started
    external: Path | None  # the new key's file when it is kept outside the database


def rotate_secret(engine: Engine, config: Config, *, new_secret_file: Path | None = None,
                  batch_size: int = 1000,
                  on_batch: Callable[[int, int], None] | None = None) -> Rotation:
    """Re-key every stored author with a new key, in batches; resumable.

    The new key is kept in the database when the current one is, unless
    *new_secret_file* names a file for it (created with a random key when
    missing). A current key kept outside the database needs that file.
    ``on_batch(last_post_id, rows_so_far)`` is called after each committed batch.
    """
    if config.privacy.authors == "keep":
        # (under drop the key makes the post keys, monitor.enrich.post_keys)
        raise ConfigError("privacy.authors", "", (
            "is 'keep': handles and post ids are stored as they are, there is no key to "
            "rotate"))
    if batch_size < 1:
        raise InputError("--batch-size", f"expected a positive number, got {batch_size}")
    if new_secret_file is not None:
        new_secret_file = new_secret_file.expanduser().absolute()
    where = engine.url.render_as_string(hide_password=True)
    rows = load_keys(engine)
    pending = [r for r in rows if r.state == "rotating"]
    resumed = bool(pending)
    if pending:
        target = pending[0]
        inner = [r for r in rows if r.version < target.version]
        if any(r.secret is None for r in inner):
            raise ConfigError(where, "author_keys", "a retired key of the chain is missing; "
                              "restore the table from a backup of the database")
        old = AuthorKey(tuple(r.secret.encode("utf-8") for r in inner if r.secret))
        if target.secret is not None:
            secret = target.secret.encode("utf-8")
        elif new_secret_file is None:
            raise ConfigError(where, "--new-secret-file", (
                f"the unfinished rotation is to a key kept outside the database (fingerprint "
                f"{target.fingerprint}): give the same --new-secret-file again"))
        else:
            secret = load_or_create_secret_file(new_secret_file)
            if fingerprint(secret) != target.fingerprint:
                raise ConfigError(str(new_secret_file), "--new-secret-file", (
                    f"holds a key with fingerprint {fingerprint(secret)}, the unfinished "
                    f"rotation is to {target.fingerprint}: give the file it started with"))
    else:
        current_key = resolve_key(config, engine, create=True)
        assert current_key is not None  # hash mode: created or found, else it raised
        current = load_keys(engine)[-1]
        if new_secret_file is not None:
            secret = load_or_create_secret_file(new_secret_file)
        elif current.secret is not None:
            secret = new_secret().encode("ascii")
        else:
            raise ConfigError(where, "--new-secret-file", (
                "the current author key is kept outside the database (privacy.hash_secret or "
                "privacy.hash_secret_file): give --new-secret-file FILE for the new one"))
        if fingerprint(secret) == current.fingerprint:
            raise ConfigError(str(new_secret_file), "--new-secret-file",
                              "holds the current key; a rotation needs a new one")
        old = current_key
        # a database that still holds platform keys gets its pseudonyms first
        pseudonymise_existing(engine, PostKeys(old), drop_urls=config.privacy.recheck is None)
        target = start_rotation(
            engine, current, current_key.chain[-1].decode("utf-8"), fingerprint(secret),
            None if new_secret_file is not None else secret.decode("utf-8"),
            datetime.now(UTC))
    new = AuthorKey((*old.chain, secret))

    def rekey(platform: str, stored: str) -> str:
        if is_pseudonym(stored):
            return hmac.new(secret, stored.encode("ascii"), hashlib.sha256).hexdigest()
        # a handle stored under an earlier `authors: keep`: its pseudonym, never itself
        return new.pseudonym(platform, stored)

    # post keys, tombstones and the block list follow the authors (monitor.enrich.post_keys)
    rekey_key = PostKeys(old).rekey(secret)
    last, done = target.rotated_through or 0, 0
    while True:
        last, count = rekey_batch(engine, target.version, last, batch_size, rekey, rekey_key)
        if count == 0:
            break
        done += count
        if on_batch is not None:
            on_batch(last, done)
    while rekey_deletions_batch(engine, len(old.chain), batch_size, rekey_key):
        pass
    finish_rotation(engine, target.version, lambda conn: rekey_forgotten(conn, rekey))
    log.info("rotate-secret: author key version %d (fingerprint %s) active; %d authors "
             "re-keyed by this run", target.version, target.fingerprint, done)
    return Rotation(target.version, target.fingerprint, done, resumed,
                    new_secret_file if target.secret is None else None)
