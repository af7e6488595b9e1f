"""Serving the dashboard with uvicorn, inside the service or on its own."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable, Generator

import uvicorn
from sqlalchemy import Engine

from monitor.config import Config
from monitor.errors import ConfigError
from monitor.web.app import create_app
from monitor.web.settings import unprotected_problem

__all__ = ["serve"]

log = logging.getLogger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here because uvicorn answers a taken port with
    a log line and ``sys.exit`` (a traceback per task, exit 3)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError("web.port", "", f"{host}:{port} is already in use (another "
                              "monitor or dashboard?); stop it or choose another port with "
                              "--port or web.port") from None
        raise ConfigError("web.host", "", f"cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to the service that runs it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(engine: Engine, config: Config, *, embedded: bool = True,
                announce: Callable[[str], None] | None = None) -> None:
    """Serve the dashboard on ``web.host:web.port`` until cancelled (or a signal if standalone).

    Usable as ``service.add_background("web", lambda: serve(engine, config))``;
    cancellation stops accepting, finishes open requests and returns.

    Raises :class:`ConfigError` before binding when the address is beyond
    loopback and there is no token, however the server was started (the config
    only checks this when ``web.enabled`` is true), and when the port is taken:
    the socket is bound here, before anything says the dashboard is up. Once it
    is bound, *announce* (default: a log line) is called with the URL.
    """
    settings = config.web
    problem = unprotected_problem(settings.host, settings.token)
    if problem:
        raise ConfigError("web", "host", problem)
    uv_config = uvicorn.Config(
        create_app(engine, config), host=settings.host, port=settings.port,
        log_level="warning", access_log=False, lifespan="off", server_header=False,
    )
    server = _EmbeddedServer(uv_config) if embedded else uvicorn.Server(uv_config)
    sock = _bind(settings.host, settings.port)
    url = f"http://{settings.host}:{settings.port}/"
    if announce is None:
        log.info("dashboard on %s", url)
    else:
        announce(url)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
