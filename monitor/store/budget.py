"""Reads that end with the dashboard's time budget, on the database server too.

The dashboard answers a request 503 once ``web.request_budget`` is spent, but its
query used to run on: a thread cannot be stopped, and PostgreSQL went on
working for a client that had stopped listening (issue 11, "Overload"). The
engine :func:`budgeted` gives the dashboard sets ``statement_timeout`` to the
budget on each of its PostgreSQL connections, so the server cancels a query the
budget has already given up on; the thread then ends with an error, and the
request (already answered, or answered now) is a 503.

SQLite has no server: its query runs in the request's own thread and is bounded
by the range and step caps of the queries instead.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Engine, event

from monitor.store.db import make_engine

__all__ = ["budgeted"]


def budgeted(engine: Engine, seconds: float) -> Engine:
    """An engine for *engine*'s database whose queries the server cancels after *seconds*.

    PostgreSQL: a new engine (its own small pool) whose connections carry
    ``statement_timeout``; anything else: *engine* itself.
    """
    if engine.dialect.name != "postgresql":
        return engine
    reads = make_engine(engine.url.render_as_string(hide_password=False))
    milliseconds = max(1, math.ceil(seconds * 1000))

    def limit(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            # a session setting: it holds for every transaction on this connection
            cursor.execute(f"SET statement_timeout = {milliseconds:d}")
        dbapi_connection.commit()

    event.listen(reads, "connect", limit)
    return reads
