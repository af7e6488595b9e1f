"""Each host keeps its own connections alive between requests, however many hosts are
polled, and closing the client closes every one of them; a pool pushed out by newer
hosts is never closed under a live stream. Real loopback servers count the TCP
connections they see (one client port per connection)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from monitor.sources.http import HttpClient
from monitor.sources.transport import EnvironmentProxies
from tests.sources.conftest import FAST


class _Host(ThreadingHTTPServer):
    """One keep-alive HTTP/1.1 host that records each connection's requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: dict[int, int] = {}  # client port -> requests on that connection
        self.ended: set[int] = set()  # client ports whose connection the client closed
        self.release = threading.Event()  # lets an open /stream finish
        # a short poll interval: shutdown() waits for it, for each of the 25 hosts
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def connections(self) -> int:
        with self.lock:
            return len(self.requests)

    def open_connections(self) -> int:
        with self.lock:
            return len(self.requests.keys() - self.ended)

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real instances answer
    server: _Host

    def do_GET(self) -> None:
        with self.server.lock:
            port = self.client_address[1]
            self.server.requests[port] = self.server.requests.get(port, 0) + 1
        if self.path == "/stream":  # a live stream: one event now, the end when released
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"data: hello\n\n")
            self.server.release.wait(10)
            self._chunk(b"data: bye\n\n")
            self._chunk(b"")
            return
        body = json.dumps({"port": self.server.server_address[1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def finish(self) -> None:  # the connection is over (the client closed it)
        super().finish()
        with self.server.lock:
            self.server.ended.add(self.client_address[1])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hosts() -> Iterator[list[_Host]]:
    # more hosts than the 20 keep-alive connections the one shared pool used to keep
    servers = [_Host() for _ in range(25)]
    yield servers
    for server in servers:
        server.stop()


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_each_host_reuses_its_own_connection_and_close_ends_them_all(
    hosts: list[_Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    http = HttpClient(FAST)
    try:
        for _ in range(3):  # round-robin polls, as the scheduler sends them
            for host in hosts:
                data, _ = await http.get_json(f"{host.url}/api/v1/timelines/tag/metoo")
                assert data == {"port": host.server_address[1]}
        # one connection per host, every request of the three rounds on it
        assert [(h.connections(), sum(h.requests.values())) for h in hosts] == [(1, 3)] * 25
        assert all(h.open_connections() == 1 for h in hosts)
    finally:
        await http.aclose()
    await _until(lambda: all(h.open_connections() == 0 for h in hosts))


async def test_live_stream_keeps_its_connection_while_polls_of_the_host_go_on(
    hosts: list[_Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream holds a connection for hours outside the host's concurrency slot:
    polls of the same host must neither wait behind it nor lose their kept-alive
    connection because of it; and when
    newer hosts push the stream's pool out, the stream goes on and its connection
    pool (with its idle connection) is closed only once the stream ends."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    pools = EnvironmentProxies({}, max_hosts=2)
    async with httpx.AsyncClient(transport=pools, timeout=5) as client:
        live = hosts[0]
        async with client.stream("GET", f"{live.url}/stream") as response:
            events = response.aiter_lines()
            assert await anext(events) == "data: hello"
            polled = await client.get(f"{live.url}/poll")
            assert polled.json() == {"port": live.server_address[1]}
            assert live.connections() == 2  # the stream's, and one for the poll
            await client.get(f"{live.url}/poll")
            assert live.connections() == 2  # the poll's connection was kept for the next
            for host in hosts[1:3]:  # two newer hosts: the live host's pool is evicted
                await client.get(f"{host.url}/poll")
            assert pools.hosts == 2
            await asyncio.sleep(0.1)
            assert live.open_connections() == 2  # not closed under the open stream
            live.release.set()
            rest = [line async for line in events if line]
            assert rest == ["data: bye"]
        await _until(lambda: live.open_connections() == 0)  # closed once the stream ended
        assert hosts[1].open_connections() == hosts[2].open_connections() == 1
    await _until(lambda: all(h.open_connections() == 0 for h in hosts))
