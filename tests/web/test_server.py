"""The dashboard embedded in the service: serves until cancelled, then stops cleanly."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from monitor.config import parse_config
from monitor.store.db import make_engine, migrate
from monitor.web.server import serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_until_cancelled(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    migrate(engine)
    port = free_port()
    config = parse_config({"web": {"port": port}}, env={})
    task = asyncio.create_task(serve(engine, config))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for _ in range(100):
            try:
                response = await client.get("/healthz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the dashboard did not start")
        assert response.json() == {"status": "ok", "database": "ok"}
        assert "server" not in response.headers  # no version banner
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(httpx.TransportError):
            await client.get("/healthz")
    engine.dispose()
