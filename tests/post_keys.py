"""What a platform key is stored as under ``privacy.authors: hash`` with a configured
``hash_secret`` (a one-key chain): tests compare stored keys with the fakes' keys
through this (monitor.enrich.post_keys)."""

from __future__ import annotations

from monitor.enrich.post_keys import PostKeys
from monitor.enrich.privacy import AuthorKey


def stored_key(platform: str, key: str, secret: str = "k" * 32) -> str:
    """*key* of *platform* as a database keyed with *secret* stores it."""
    return PostKeys(AuthorKey((secret.encode("utf-8"),))).stored(platform, key)
