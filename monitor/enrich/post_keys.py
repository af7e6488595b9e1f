"""Post keys as keyed pseudonyms under ``privacy.authors: hash`` (and ``drop``).

A platform's post id names its author on most platforms: a Mastodon status uri
``https://host/users/alice/statuses/1``, a Bluesky ``at://did:plc:…/…`` uri, a
Nostr key carrying the pubkey digest. Under ``authors: hash`` (or ``drop``: an
id naming its author would undo the drop) the database
keeps instead ``pk<v>:`` + 64 hex digits, an HMAC chain over
``"post" NUL platform NUL key`` with the database's author key (the same chain
as author pseudonyms, :mod:`monitor.enrich.privacy`; ``v`` is the key version
count). So:

- the same original key always gives the same stored key: dedupe across
  instances, across API and RSS, and of imports still works;
- deletions and edits go through the same mapping (:meth:`PostKeys.stored`) and
  find their post; a deletion that arrives first leaves a tombstone under the
  stored key, so the post is still not stored when it shows up;
- mapping is idempotent: a value already of the stored shape is kept as it is
  (a re-check or ``monitor forget`` may pass a stored key back);
- rotation (``monitor rotate-secret``) re-keys ``pk<v>:h`` to
  ``pk<v+1>:HMAC(new, h)``, the version telling done from not done, so it is
  resumable without a cursor.

Where it is applied (one chokepoint, not in the collectors): the
:class:`~monitor.enrich.pipeline.Enricher` maps every post and edit it scores,
and :meth:`Enricher.gate` maps a batch's deletions before the service looks
them up. Existing rows of a database that ran with platform keys are converted
by :func:`pseudonymise_existing` (the first service start or import after the
upgrade; resumable, batch by batch).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable

from monitor.enrich.privacy import AuthorKey, hmac_sha256_hex

__all__ = ["PostKeys", "is_bluesky_handle_ref", "is_post_pseudonym", "key_version",
           "original_key"]

log = logging.getLogger("monitor.privacy")

_STORED = re.compile(r"pk([1-9][0-9]{0,3}):([0-9a-f]{64})")
# Mastodon's status page https://host/@name/123 (the status uri is
# https://host/users/name/statuses/123: same host, same id)
_MASTODON_URL = re.compile(r"^(https?://[^/?#]+)/@([^/?#@]+)/([0-9A-Za-z]+)$")
_MASTODON_URI = re.compile(r"^https?://[^/?#]+/users/[^/?#]+/statuses/[^/?#]+$")
_BSKY_URL = re.compile(r"^https://bsky\.app/profile/(did:[a-z]+:[A-Za-z0-9._:%-]+)/post/"
                       r"([A-Za-z0-9._~:-]+)$")
# a Bluesky post named by its author's handle (a link as the app shares it, or an
# at:// uri): the key holds the DID, and a handle resolves to one only online
_BSKY_HANDLE_REF = re.compile(r"^(?:(?:https?://)?(?:www\.)?bsky\.app/profile/|at://)"
                              r"(?!did:)[^/?#]+/(?:post|app\.bsky\.feed\.post)/[^/?#]+/?$")


def is_bluesky_handle_ref(ref: str) -> bool:
    """True for a Bluesky post link or at:// uri naming a handle instead of a DID
    (``bsky.app/profile/alice.bsky.social/post/RKEY``): no stored key can be
    worked out from it without asking the network."""
    return _BSKY_HANDLE_REF.match(ref.strip()) is not None


def is_post_pseudonym(key: str) -> bool:
    """True for a stored post-key pseudonym (``pk<v>:`` and 64 hex digits)."""
    return _STORED.fullmatch(key) is not None


def key_version(key: str) -> int | None:
    """The key version a stored pseudonym was made with (None: a platform key)."""
    match = _STORED.fullmatch(key)
    return int(match.group(1)) if match else None


def original_key(platform: str, url: str | None) -> str | None:
    """A post's platform key worked out from its link, for the re-check and ``forget``
    (None when the link's shape is not known). Mastodon: the status uri with the
    link's host and id (what the re-check asks the origin); Bluesky: the at:// uri."""
    if not url:
        return None
    if platform == "mastodon":
        if _MASTODON_URI.match(url):
            return url
        match = _MASTODON_URL.match(url)
        if match:
            return f"{match.group(1)}/users/{match.group(2)}/statuses/{match.group(3)}"
        return None
    if platform == "bluesky":
        if url.startswith("at://"):
            return url
        match = _BSKY_URL.match(url)
        if match:
            return f"at://{match.group(1)}/app.bsky.feed.post/{match.group(2)}"
        return None
    return url if platform in ("lemmy",) else None


class PostKeys:
    """Maps platform post keys to their stored pseudonyms with one database's key."""

    __slots__ = ("_chain",)

    def __init__(self, key: AuthorKey) -> None:
        self._chain = key.chain

    @property
    def version(self) -> int:
        return len(self._chain)

    def stored(self, platform: str, key: str) -> str:
        """The key as stored: its pseudonym, or *key* itself when it already is one."""
        if key.startswith("pk") and _STORED.fullmatch(key):
            return key
        message = f"post\x00{platform}\x00{key}".encode("utf-8", "surrogatepass")
        # the key's HMAC padding is hashed once per process, not once per post
        value = hmac_sha256_hex(self._chain[0], message)
        for secret in self._chain[1:]:
            value = hmac_sha256_hex(secret, value.encode("ascii"))
        return f"pk{len(self._chain)}:{value}"

    def candidates(self, platforms: Iterable[str], key: str) -> set[str]:
        """What *key* may be stored as on any of *platforms* (itself when stored-shaped)."""
        return {self.stored(platform, key) for platform in platforms}

    def rekey(self, secret: bytes) -> Callable[[str, str], str]:
        """``f(platform, stored)`` for a rotation to *secret*, the next key version:
        ``pk<v>:h`` → ``pk<v+1>:HMAC(secret, h)``; a value already at v+1 is kept and
        a platform key is mapped with the new chain."""
        old = self.version
        new = PostKeys(AuthorKey((*self._chain, secret)))

        def rekey(platform: str, value: str) -> str:
            match = _STORED.fullmatch(value)
            if match is None:
                return new.stored(platform, value)
            if int(match.group(1)) != old:
                return value
            digest = hmac.new(secret, match.group(2).encode("ascii"), hashlib.sha256)
            return f"pk{old + 1}:{digest.hexdigest()}"

        return rekey

    def __repr__(self) -> str:  # never shows a key
        return f"PostKeys(version={self.version})"
