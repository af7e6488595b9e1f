"""How a read function of the store gets a connection.

Every read takes a :data:`Reader`: an :class:`~sqlalchemy.Engine` when the
caller just wants an answer (a fresh connection is opened and closed), or a
:class:`~sqlalchemy.Connection` when the read must see the caller's
transaction (the detector evaluates rules inside the transaction that writes
their alerts) or when several reads should share one connection (a metrics
scrape).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

__all__ = ["Reader", "reading"]

Reader = Engine | Connection


@contextmanager
def reading(db: Reader) -> Iterator[Connection]:
    """A connection to read from: *db* itself, or a new one of the engine *db*."""
    if isinstance(db, Connection):
        yield db
        return
    with db.connect() as conn:
        yield conn
