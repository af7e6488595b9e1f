"""Alert delivery: the outbox dispatcher and its notifiers (log, email, MQTT).

Detection writes one ``outbox`` row per alert transition; the
:class:`~monitor.notify.outbox.Dispatcher` delivers each row to every
configured notifier, tracked per notifier in ``deliveries``. Import the
submodules directly; this package keeps its import light because
:mod:`monitor.config` imports :mod:`monitor.notify.settings`.
"""
