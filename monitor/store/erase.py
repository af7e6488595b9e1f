"""Removing posts: platform deletions (tombstones) and the rows they remove.

A platform that says a post is gone (a Jetstream or Mastodon ``delete``, a
Nostr NIP-09 event, a re-check that finds it vanished, an import of deleted
ids) is handled by :func:`apply_deletions` inside ``write_batch``'s
transaction: the ``deletions`` row (platform, key, time — nothing else) is
recorded, and the post row with its tags, its text and its author pseudonym is
deleted in the same transaction. The ``deletions`` row stays as a tombstone:
both batch executors skip a post whose key it holds, so a deletion that
arrives before its post (replays, federation delays) still wins and the post
is neither stored nor counted.

The rollups: by default (``privacy.deletions: keep``) the 5-minute buckets and
the tag-pair rollup keep counting the post — the volume seen at the time is a
research fact and identifies nobody. With ``recount`` :func:`remove_posts`
subtracts exactly what the post added (the rules of ``buckets`` and ``pairs``,
with the pair rule's first ``MAX_PAIR_TAGS`` tags read back in the post's own
order from ``post_tags.seq``) in the same transaction; a rollup row that drops
to zero posts is removed.

:func:`remove_posts` is also the one way to delete post rows by id for other
callers (erasure on request).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from monitor.store.buckets import NEGATIVE_AT, POSITIVE_AT, bucket_start
from monitor.store.pairs import MAX_PAIR_TAGS
from monitor.store.schema import deletions, post_tags, posts, tag_buckets, tag_pair_buckets

__all__ = ["Removed", "apply_deletions", "remove_posts"]

# keys per IN (...) list: well under SQLite's and psycopg's parameter limits
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Removed:
    """What a removal changed."""

    posts: int  # post rows deleted (with their tags)
    recounted: bool  # the rollups were decremented


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _insert_tombstones(conn: Connection, keys: Sequence[tuple[str, str]], now: datetime) -> None:
    stmt = (postgresql.insert(deletions) if conn.dialect.name == "postgresql"
            else sqlite.insert(deletions))
    conn.execute(stmt.on_conflict_do_nothing(),
                 [{"platform": pl, "key": k, "seen_at": now} for pl, k in keys])


def apply_deletions(conn: Connection, keys: Sequence[tuple[str, str]], now: datetime, *,
                    recount: bool = False) -> int:
    """Record *keys* (platform, key; sorted) as deleted and remove the posts we hold.

    Runs in the caller's transaction (``write_batch``'s). The tombstones are
    written first: on SQLite that takes the write lock before anything is read.
    Returns the number of post rows removed.
    """
    if not keys:
        return 0
    _insert_tombstones(conn, keys, now)
    by_platform: dict[str, list[str]] = defaultdict(list)
    for platform, key in keys:
        by_platform[platform].append(key)
    p = posts.c
    found: list[tuple[int, str, str]] = []
    for platform, platform_keys in sorted(by_platform.items()):
        for chunk in _chunks(platform_keys):
            found.extend(
                (int(row.id), row.platform, row.key) for row in conn.execute(
                    select(p.id, p.platform, p.key)
                    .where(p.platform == platform, p.key.in_(list(chunk))))
            )
    if not found:
        return 0
    removed = remove_posts(conn, sorted(pid for pid, _, _ in found), recount=recount)
    d = deletions.c
    conn.execute(
        update(deletions)
        .where(d.platform == bindparam("b_platform"), d.key == bindparam("b_key"))
        .values(applied_at=now),
        [{"b_platform": pl, "b_key": k} for _, pl, k in sorted(found, key=lambda f: f[1:])],
    )
    return removed.posts


def remove_posts(conn: Connection, ids: Sequence[int], *, recount: bool = False) -> Removed:
    """Delete the posts *ids* and their tags (subtracting them from the rollups
    first when *recount*), in the caller's transaction."""
    if not ids:
        return Removed(0, recount)
    if recount:
        _subtract(conn, ids)
    count = 0
    for chunk in _chunks(list(ids)):
        # explicit, not left to ON DELETE CASCADE: SQLite enforces it only with
        # PRAGMA foreign_keys, which a foreign connection may not have set
        conn.execute(delete(post_tags).where(post_tags.c.post_id.in_(list(chunk))))
        count += conn.execute(delete(posts).where(posts.c.id.in_(list(chunk)))).rowcount
    return Removed(count, recount)


def _subtract(conn: Connection, ids: Sequence[int]) -> None:
    """Take the posts *ids* out of ``tag_buckets`` and ``tag_pair_buckets``."""
    p, t = posts.c, post_tags.c
    info: dict[int, tuple[datetime, float | None]] = {}
    tags: dict[int, list[str]] = defaultdict(list)
    for chunk in _chunks(list(ids)):
        for pid, created, compound in conn.execute(
                select(p.id, p.created_at, p.compound).where(p.id.in_(list(chunk)))):
            info[int(pid)] = (created, compound)
        # the post's own order (seq); rows from before seq existed: by tag
        for pid, tag in conn.execute(select(t.post_id, t.tag).where(t.post_id.in_(list(chunk)))
                                     .order_by(t.post_id, t.seq.is_(None), t.seq, t.tag)):
            tags[int(pid)].append(tag)
    buckets: dict[tuple[str, datetime], list[float]] = {}
    pairs: dict[tuple[str, str, datetime], list[float]] = {}
    for pid, (created, compound) in info.items():
        start = bucket_start(created)
        scored = compound is not None
        c = float(compound) if compound is not None else 0.0
        added = [1, int(scored), c, c * c, int(scored and c >= POSITIVE_AT),
                 int(scored and NEGATIVE_AT < c < POSITIVE_AT), int(scored and c <= NEGATIVE_AT)]
        post_tags_ = tags.get(pid, [])
        for tag in post_tags_:
            acc = buckets.setdefault((tag, start), [0, 0, 0.0, 0.0, 0, 0, 0])
            for i, value in enumerate(added):
                acc[i] += value
        # the pair rule of monitor.store.pairs: the first MAX_PAIR_TAGS tags, sorted pairs
        for a, b in combinations(sorted(set(post_tags_[:MAX_PAIR_TAGS])), 2):
            acc = pairs.setdefault((a, b, start), [0, 0, 0.0])
            acc[0] += 1
            acc[1] += int(scored)
            acc[2] += c
    tb, pb = tag_buckets.c, tag_pair_buckets.c
    if buckets:
        # key order: concurrent writers lock rollup rows in the same order
        rows = [{"b_tag": tag, "b_start": start, "d_posts": v[0], "d_scored": v[1],
                 "d_sum": v[2], "d_sq": v[3], "d_pos": v[4], "d_neu": v[5], "d_neg": v[6]}
                for (tag, start), v in sorted(buckets.items())]
        conn.execute(
            update(tag_buckets)
            .where(tb.tag == bindparam("b_tag"), tb.bucket_start == bindparam("b_start"))
            .values(posts=tb.posts - bindparam("d_posts"),
                    scored=tb.scored - bindparam("d_scored"),
                    compound_sum=tb.compound_sum - bindparam("d_sum"),
                    compound_sq_sum=tb.compound_sq_sum - bindparam("d_sq"),
                    positive=tb.positive - bindparam("d_pos"),
                    neutral=tb.neutral - bindparam("d_neu"),
                    negative=tb.negative - bindparam("d_neg")),
            rows,
        )
        _drop_empty(conn, tag_buckets, [and_(tb.tag == tag, tb.bucket_start == start)
                                        for tag, start in sorted(buckets)])
    if pairs:
        rows = [{"b_a": a, "b_b": b, "b_start": start, "d_posts": v[0], "d_scored": v[1],
                 "d_sum": v[2]} for (a, b, start), v in sorted(pairs.items())]
        conn.execute(
            update(tag_pair_buckets)
            .where(pb.tag_a == bindparam("b_a"), pb.tag_b == bindparam("b_b"),
                   pb.bucket_start == bindparam("b_start"))
            .values(posts=pb.posts - bindparam("d_posts"),
                    scored=pb.scored - bindparam("d_scored"),
                    compound_sum=pb.compound_sum - bindparam("d_sum")),
            rows,
        )
        _drop_empty(conn, tag_pair_buckets, [
            and_(pb.tag_a == a, pb.tag_b == b, pb.bucket_start == start)
            for a, b, start in sorted(pairs)])


def _drop_empty(conn: Connection, table: Any, where: list[Any]) -> None:
    """Delete the rollup rows among *where* that no post counts any more."""
    for chunk in _chunks(where, 100):
        conn.execute(delete(table).where(table.c.posts <= literal(0), or_(*chunk)))
