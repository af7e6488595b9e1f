"""Run a Starlette app on 127.0.0.1 (port 0) in a thread, plus the fault switchboard.

Faults are queued per fake and consumed one per API request, so a test says
``fake.faults.fail_next(3, status=503)`` and the next three API calls fail.
The same switches are reachable over HTTP for people driving the fakes by
hand: ``POST /_fake/faults {"kind": "status", "count": 3, "status": 503}``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Fault", "Faults", "RateWindow", "RecordedRequest", "RunningServer", "admin_routes",
           "apply_fault", "run_app"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One queued misbehaviour: ``status`` (5xx/4xx), ``rate_limit`` (429 with the
    platform's headers), ``stall`` (answer after ``seconds``), ``truncate`` (JSON cut
    in half), ``wrong_type`` (an HTML page with 200), ``wrong_shape`` (200 with JSON
    that is neither a list nor the expected object)."""

    kind: str
    status: int = 503
    seconds: float = 0.0


class Faults:
    """Thread-safe queue of faults, consumed one per API request."""

    KINDS = ("status", "rate_limit", "stall", "truncate", "wrong_type", "wrong_shape")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()

    def add(self, kind: str, count: int = 1, *, status: int = 503, seconds: float = 0.0) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {self.KINDS}")
        with self._lock:
            self._queue.extend(Fault(kind, status, seconds) for _ in range(count))

    def fail_next(self, count: int = 1, *, status: int = 503) -> None:
        self.add("status", count, status=status)

    def rate_limit_next(self, count: int = 1, *, seconds: float = 1.0) -> None:
        self.add("rate_limit", count, seconds=seconds)

    def stall_next(self, count: int = 1, *, seconds: float = 5.0) -> None:
        self.add("stall", count, seconds=seconds)

    def truncate_next(self, count: int = 1) -> None:
        self.add("truncate", count)

    def wrong_type_next(self, count: int = 1) -> None:
        self.add("wrong_type", count)

    def wrong_shape_next(self, count: int = 1) -> None:
        """Valid JSON of the wrong shape (an object where a list belongs, and so on)."""
        self.add("wrong_shape", count)

    def take(self) -> Fault | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


class RateWindow:
    """A fixed-window request counter, like rack-attack and the atproto limiter."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._started = time.time()
        self._used = 0

    def hit(self) -> tuple[bool, int, float]:
        """Count one request: (allowed, remaining, reset as epoch seconds)."""
        with self._lock:
            now = time.time()
            if now >= self._started + self.window:
                self._started, self._used = now, 0
            self._used += 1
            remaining = max(0, self.limit - self._used)
            return self._used <= self.limit, remaining, self._started + self.window


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    at: float  # time.monotonic()
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


@dataclass
class FakeBase:
    """Shared state of a fake: its fault queue, request log and optional rate window."""

    faults: Faults = field(default_factory=Faults)
    requests: list[RecordedRequest] = field(default_factory=list)
    rate: RateWindow | None = None

    def record(self, request: Request) -> None:
        self.requests.append(RecordedRequest(
            at=time.monotonic(), method=request.method, path=request.url.path,
            query=list(request.query_params.multi_items()), headers=dict(request.headers),
        ))

    def api_requests(self, path_part: str = "") -> list[RecordedRequest]:
        return [r for r in list(self.requests)
                if not r.path.startswith("/_fake") and path_part in r.path]


async def apply_fault(fault: Fault, body: Callable[[], Response],
                      limited: Callable[[float], Response]) -> Response:
    """Turn a queued fault into the response (or delay) it stands for."""
    if fault.kind == "status":
        return JSONResponse({"error": f"fake failure {fault.status}"}, status_code=fault.status)
    if fault.kind == "rate_limit":
        return limited(fault.seconds)
    if fault.kind == "stall":
        await asyncio.sleep(fault.seconds)
        return body()
    if fault.kind == "wrong_shape":
        return JSONResponse({"unexpected": ["not", "what", "you", "asked", "for"]})
    response = body()
    if fault.kind == "truncate":
        raw = bytes(response.body)
        return Response(raw[: max(1, len(raw) // 2)], media_type="application/json",
                        headers={k: v for k, v in response.headers.items()
                                 if k.lower() not in ("content-length", "content-type")})
    return Response("<html><body><h1>502 Bad Gateway</h1></body></html>",
                    media_type="text/html")


def iso(dt: datetime) -> str:
    """Milliseconds and Z, as both platforms write times."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def admin_routes(fake: FakeBase, add_post: Callable[[dict[str, Any]], Any],
                 expected: Callable[[], dict[str, Any]]) -> list[Route]:
    """``/_fake/*``: switch faults, add posts and read the known counts over HTTP."""

    async def faults(request: Request) -> Response:
        data = await request.json()
        try:
            fake.faults.add(str(data.get("kind", "status")), int(data.get("count", 1)),
                            status=int(data.get("status", 503)),
                            seconds=float(data.get("seconds", 0.0)))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"pending": fake.faults.pending()})

    async def clear(request: Request) -> Response:
        fake.faults.clear()
        return JSONResponse({"pending": 0})

    async def posts(request: Request) -> Response:
        data = await request.json()
        return JSONResponse(add_post(data if isinstance(data, dict) else {}))

    async def show(request: Request) -> Response:
        return JSONResponse(expected())

    return [
        Route("/_fake/faults", faults, methods=["POST"]),
        Route("/_fake/clear", clear, methods=["POST"]),
        Route("/_fake/posts", posts, methods=["POST"]),
        Route("/_fake/expected", show, methods=["GET"]),
    ]


class RunningServer:
    """A uvicorn server in a daemon thread; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, app: Starlette, name: str, port: int = 0) -> None:
        self.name = name
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit this: no 40 ms Nagle/delayed-ACK stall on keep-alive
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1, access_log=False)
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name=f"fake-{name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"fake {name} did not start")
            time.sleep(0.01)

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()


def run_app(app: Starlette, name: str = "fake", port: int = 0) -> RunningServer:
    """Serve *app* on 127.0.0.1:*port* (0 = any free port) until ``stop()``."""
    return RunningServer(app, name, port)
