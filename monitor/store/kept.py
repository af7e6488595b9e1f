"""Reads of what the store keeps about people: the oldest row of each kind, the
retention job's last runs, and the posts a re-check should ask about.

Every "oldest" read follows an index, so ``monitor status`` stays cheap on a
large database: posts by ``ix_posts_created_at``, text by the partial
``ix_posts_text_created_at``, buckets by ``ix_tag_buckets_bucket_start``.
Authors have no index of their own (nearly every row has one): the read starts
where the retention job stopped (``retention_state``), as the job does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from monitor.store.reading import Reader, reading
from monitor.store.schema import deletions, forgotten_authors, posts, retention_state, tag_buckets

__all__ = ["JobRun", "OldestRow", "oldest_rows", "recheck_candidates", "retention_runs"]

# as monitor.store.retention: posts stored since the authors pass's last run
_ID_SLACK = 10_000


@dataclass(frozen=True, slots=True)
class OldestRow:
    """The oldest stored item of one kind (``oldest`` is None when there is none)."""

    kind: str  # posts | text | authors | deletions | buckets | forgotten
    oldest: datetime | None


@dataclass(frozen=True, slots=True)
class JobRun:
    """The retention job's last run for one kind."""

    kind: str
    last_run_at: datetime | None
    last_ok_at: datetime | None
    last_changed: int
    last_error: str | None


def oldest_rows(db: Reader) -> list[OldestRow]:
    """The oldest post, post with text, post with an author pseudonym, deletion and bucket."""
    p = posts.c
    with reading(db) as conn:
        oldest_post = conn.execute(select(func.min(p.created_at))).scalar()
        oldest_text = conn.execute(select(p.created_at).where(p.text.is_not(None))
                                   .order_by(p.created_at).limit(1)).scalar()
        state = conn.execute(select(retention_state.c.done_before, retention_state.c.seen_id)
                             .where(retention_state.c.kind == "authors")).first()
        has_author = select(p.created_at).where(p.author.is_not(None))
        if state is not None and state.done_before is not None and state.seen_id is not None:
            # everything older was cleared, except posts stored since (late imports)
            candidates = [
                conn.execute(has_author.where(p.created_at >= state.done_before)
                             .order_by(p.created_at).limit(1)).scalar(),
                conn.execute(select(func.min(p.created_at)).where(
                    p.id > int(state.seen_id) - _ID_SLACK, p.author.is_not(None))).scalar(),
            ]
            found = [c for c in candidates if c is not None]
            oldest_author = min(found) if found else None
        else:
            oldest_author = conn.execute(has_author.order_by(p.created_at).limit(1)).scalar()
        oldest_deletion = conn.execute(select(func.min(deletions.c.seen_at))).scalar()
        oldest_bucket = conn.execute(select(func.min(tag_buckets.c.bucket_start))).scalar()
        forgotten = conn.execute(select(func.count(), func.min(forgotten_authors.c.at))).one()
    rows = [
        OldestRow("posts", oldest_post),
        OldestRow("text", oldest_text),
        OldestRow("authors", oldest_author),
        OldestRow("deletions", oldest_deletion),
        OldestRow("buckets", oldest_bucket),
    ]
    if forgotten[0]:  # shown once someone was forgotten (monitor forget --author)
        rows.append(OldestRow("forgotten", forgotten[1]))
    return rows


def retention_runs(db: Reader) -> list[JobRun]:
    """The retention job's last run per kind it has run for."""
    r, f = retention_state.c, forgotten_authors.c
    with reading(db) as conn:
        rows = conn.execute(select(retention_state).order_by(r.kind)).all()
        forgotten = conn.execute(select(func.count(), func.max(f.at),
                                        func.coalesce(func.sum(f.dropped), 0))).one()
    runs = [JobRun(kind=row.kind, last_run_at=row.last_run_at, last_ok_at=row.last_ok_at,
                   last_changed=int(row.last_changed or 0), last_error=row.last_error)
            for row in rows]
    if forgotten[0]:
        # the block list: when someone was last forgotten, and how many later posts of
        # forgotten authors were dropped before being stored ("changed")
        runs.append(JobRun(kind="forgotten", last_run_at=forgotten[1], last_ok_at=forgotten[1],
                           last_changed=int(forgotten[2]), last_error=None))
    return runs


def recheck_candidates(db: Reader, platform: str, since: datetime, after_id: int,
                       limit: int) -> list[tuple[int, str, str | None]]:
    """(id, key, url) of *platform*'s posts created at or after *since* with an id
    above *after_id*, in id order: the next slice a re-check asks about (the url
    gives the platform key when the stored key is a pseudonym)."""
    p = posts.c
    with reading(db) as conn:
        rows = conn.execute(
            select(p.id, p.key, p.url).where(p.platform == platform, p.created_at >= since,
                                             p.id > after_id)
            .order_by(p.id).limit(limit)).all()
    return [(int(row.id), str(row.key), row.url) for row in rows]
