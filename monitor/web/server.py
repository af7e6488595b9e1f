"""Serving the dashboard with uvicorn, inside the service or on its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator

import uvicorn
from sqlalchemy import Engine

from monitor.config import Config
from monitor.web.app import create_app

__all__ = ["serve"]

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to the service that runs it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(engine: Engine, config: Config, *, embedded: bool = True) -> None:
    """Serve the dashboard on ``web.host:web.port`` until cancelled (or a signal if standalone).

    Usable as ``service.add_background("web", lambda: serve(engine, config))``;
    cancellation stops accepting, finishes open requests and returns.
    """
    settings = config.web
    uv_config = uvicorn.Config(
        create_app(engine, config), host=settings.host, port=settings.port,
        log_level="warning", access_log=False, lifespan="off", server_header=False,
    )
    server = _EmbeddedServer(uv_config) if embedded else uvicorn.Server(uv_config)
    log.info("dashboard on http://%s:%d/", settings.host, settings.port)
    serving = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
