"""Detection: alert rules over the stored time series, and the alert lifecycle.

- :mod:`~monitor.detect.settings`: rule kinds as they appear under ``rules:``.
- :mod:`~monitor.detect.seasonal`: the streaming spike detector (seasonal, robust).
- :mod:`~monitor.detect.rules`: each rule kind's condition, read from the store.
- :mod:`~monitor.detect.lifecycle`: pending → firing → resolved, repeat, mutes.
- :mod:`~monitor.detect.engine`: ``evaluate(engine, config, now)``, one transaction.
- :mod:`~monitor.detect.silences`: time-boxed mutes.
- :mod:`~monitor.detect.nab`: the NAB scorer used by ``benchmarks/nab.py``.
"""
