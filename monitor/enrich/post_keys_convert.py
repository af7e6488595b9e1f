"""Converting a database's stored platform keys (and links) to keyed pseudonyms.

Run by the first service start or import under ``privacy.authors: hash`` or ``drop``
(:meth:`monitor.enrich.pipeline.Enricher.from_config`) and before a key rotation,
not by migration 0009: the author key may live outside the database and the
mode is a setting. Batch by batch, each its own short transaction; a converted
row has the stored shape (``pk<v>:``), so a conversion killed at any point
resumes when it runs again. Once it has finished, ``privacy_state`` records it
(``post_keys`` = ``keys``, or ``keys+urls`` when the links were dropped too) and
later starts skip the scan of ``posts`` (one primary-key read instead); a start
under ``authors: keep`` (:func:`platform_keys_written`) writes platform keys
again and clears the record, so the next ``hash`` start converts again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import Engine

from monitor.enrich.post_keys import PostKeys, is_post_pseudonym
from monitor.store.pseudonyms import (
    convert_deletions_batch,
    convert_posts_batch,
    record_step,
    step_done,
)

__all__ = ["STEP", "platform_keys_written", "pseudonymise_existing"]

log = logging.getLogger("monitor.privacy")

BATCH = 2000
STEP = "post_keys"  # privacy_state.step
_KEYS, _KEYS_URLS = "keys", "keys+urls"


def platform_keys_written(engine: Engine) -> None:
    """A writer under ``authors: keep`` (platform keys, links) starts: the conversion
    is to be done again if the database goes back to ``hash``."""
    if step_done(engine, STEP) is not None:
        record_step(engine, STEP, None, datetime.now(UTC))


def pseudonymise_existing(engine: Engine, keys: PostKeys, *, drop_urls: bool,
                          batch: int = BATCH) -> tuple[int, int]:
    """Give every stored post and tombstone its pseudonymous key (and drop the
    links with *drop_urls*). Returns (post rows, tombstones) converted; (0, 0)
    without reading ``posts`` when ``privacy_state`` records it done."""
    done = step_done(engine, STEP)
    if done == _KEYS_URLS or (done == _KEYS and not drop_urls):
        if done == _KEYS_URLS and not drop_urls:
            # links are kept (privacy.recheck) from now on: a later start without the
            # re-check must drop them again
            record_step(engine, STEP, _KEYS, datetime.now(UTC))
        return 0, 0
    converted_posts = converted_deletions = 0
    after = 0
    while True:
        after, changed = convert_posts_batch(engine, after, batch, keys.stored,
                                             is_post_pseudonym, drop_urls=drop_urls)
        if changed == 0:
            break
        converted_posts += changed
    last: tuple[str, str] | None = None
    while True:
        last, read = convert_deletions_batch(engine, last, batch, keys.stored,
                                             is_post_pseudonym)
        if read == 0:
            break
        converted_deletions += read
    if converted_posts or converted_deletions:
        log.info("privacy: %d stored posts and %d deletion records given pseudonymous keys%s",
                 converted_posts, converted_deletions,
                 " (links dropped)" if drop_urls else "")
    # recorded only once every batch is in: a conversion killed before this resumes
    record_step(engine, STEP, _KEYS_URLS if drop_urls else _KEYS, datetime.now(UTC))
    return converted_posts, converted_deletions
