"""``python -m monitor`` is the ``monitor`` command."""

from monitor.commands import main

main()
