"""Edited posts: a platform says a stored post changed (Mastodon ``status.update``).

:func:`apply_edits` replaces each stored post with its newly enriched version
in ONE transaction, and keeps the rollups equal to the stored posts: the old
version's contribution to ``tag_buckets`` and ``tag_pair_buckets`` is
subtracted, the new one's added. It does that with the store's own two
halves rather than a third copy of the rollup rules:

1. :func:`monitor.store.erase.remove_posts` with ``recount=True`` removes the
   old row and its tags and subtracts exactly what they added (the pair rule's
   first tags read back in the post's own order);
2. the batch executor of the dialect (the one ``write_batch`` uses) inserts the
   new version with its tags and increments, as for any new post.

The post keeps its key, creation time (so its 5-minute bucket) and
``collected_at``; text, language, sentiment, tags, sensitivity and url are the
new version's. A post that is not stored (never seen, or deleted) is not
inserted here: it is returned in :attr:`EditResult.missing` for the caller to
store as a new post through ``write_batch``. A post the platform reported
deleted stays deleted (its tombstone keeps the executor from inserting it).

Edits are applied in arrival order and not compared by time: an older version
arriving after a newer one would win (Mastodon's stream sends them in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, bindparam, select, update

from monitor.models import ScoredPost
from monitor.store.erase import remove_posts
from monitor.store.partitions import ensure_partitions
from monitor.store.plan import plan_batch
from monitor.store.schema import posts
from monitor.store.write import _execute

__all__ = ["EditResult", "apply_edits"]


@dataclass(frozen=True, slots=True)
class EditResult:
    """What :func:`apply_edits` changed."""

    updated: int  # stored posts replaced by their new version
    missing: tuple[ScoredPost, ...]  # edits of posts not stored (the caller may insert them)


def apply_edits(engine: Engine, edited: Sequence[ScoredPost], *,
                now: datetime | None = None) -> EditResult:
    """Replace the stored versions of *edited* posts and correct the rollups (one transaction).

    Of several edits of one post in *edited*, the last wins.
    """
    latest: dict[tuple[str, str], ScoredPost] = {}
    for post in edited:
        latest[(post.platform, post.key)] = post
    if not latest:
        return EditResult(0, ())
    p = posts.c
    keys = sorted(latest)
    found: dict[tuple[str, str], tuple[int, datetime]] = {}
    # PostgreSQL: the months' partitions, before the transaction takes locks
    ensure_partitions(engine, [post.created_at for post in latest.values()],
                      now or datetime.now(UTC))
    with engine.begin() as conn:
        for platform in sorted({pl for pl, _ in keys}):
            wanted = [k for pl, k in keys if pl == platform]
            # a write first: it takes SQLite's write lock before anything is read, and
            # locks the rows on PostgreSQL, so no writer changes them in between
            conn.execute(update(posts).where(p.platform == platform, p.key.in_(wanted))
                         .values(collected_at=p.collected_at))
            for row in conn.execute(select(p.id, p.key, p.collected_at)
                                    .where(p.platform == platform, p.key.in_(wanted))):
                found[(platform, row.key)] = (int(row.id), row.collected_at)
        if found:
            remove_posts(conn, sorted(pid for pid, _ in found.values()), recount=True)
            plan = plan_batch([latest[k] for k in sorted(found)],
                              now=now or datetime.now(UTC))
            stored = _execute(conn, plan)
            conn.execute(
                update(posts)
                .where(p.platform == bindparam("b_platform"), p.key == bindparam("b_key"))
                .values(collected_at=bindparam("b_collected")),
                [{"b_platform": pl, "b_key": k, "b_collected": found[(pl, k)][1]}
                 for pl, k in sorted(found)],
            )
        else:
            stored = None
    missing = tuple(latest[k] for k in keys if k not in found)
    return EditResult(stored.inserted if stored is not None else 0, missing)
