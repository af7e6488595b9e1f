"""The SQL store: the only package that speaks SQL.

Reads, one module per concern; each read takes an engine or a connection
(:mod:`monitor.store.reading`) and returns plain records:

- :mod:`~monitor.store.queries`: series, top tags, co-tags over a range;
- :mod:`~monitor.store.windows`: a tag over a window (totals and mean tone,
  this period against an earlier one, bucket counts, hourly series);
- :mod:`~monitor.store.posts`: stored posts (recent, exports, which we hold);
- :mod:`~monitor.store.relate`: the rollup reads behind the relate view;
- :mod:`~monitor.store.health`: stream health and the database ping.

Alert, silence and outbox state live in :mod:`~monitor.store.alerts` and
:mod:`~monitor.store.outbox`, writes in :mod:`~monitor.store.write`.
"""
