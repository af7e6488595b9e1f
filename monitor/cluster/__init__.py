"""Several ``monitor run`` processes on one PostgreSQL (issue 14).

* :mod:`monitor.cluster.settings` — the optional ``cluster:`` section (lease times);
* :mod:`monitor.cluster.hosts` — which host a polled stream belongs to;
* :mod:`monitor.cluster.jobs` — polled streams leased by host on procrastinate;
* :mod:`monitor.cluster.leader` — leadership of the streaming sources (Jetstream);
* :mod:`monitor.cluster.members` — the ``cluster_members`` rows each process renews;
* :mod:`monitor.cluster.runtime` — one process's part, as the service starts and stops it;
* :mod:`monitor.cluster.status` — the rows ``monitor status`` shows.

The engine and why it was chosen: docs/cluster-engine.md. SQLite never gets here:
one process per SQLite database (:func:`monitor.locks.exclusive_run`).
"""
