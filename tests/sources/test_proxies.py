"""Requests go through the proxy the environment names, as httpx would do on its own
without our transport, and NO_PROXY exempts hosts. A researcher behind an institution's
proxy must be able to collect; a real proxy on loopback proves the route."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from monitor.errors import SourceError
from monitor.sources.http import HttpClient
from monitor.sources.settings import HttpSettings
from monitor.sources.transport import EnvironmentProxies


class _Proxy(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # an HTTP proxy gets the absolute URL in the request line
        self.seen.append(self.path)
        body = json.dumps({"via": "proxy"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    _Proxy.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_requests_go_through_the_environment_proxy(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "")
    settings = HttpSettings(max_retries=0)
    async with HttpClient(settings) as http:
        data, _ = await http.get_json("http://social.example.invalid/api/v1/timelines/tag/metoo")
    assert data == {"via": "proxy"}
    assert _Proxy.seen == ["http://social.example.invalid/api/v1/timelines/tag/metoo"]


async def test_no_proxy_sends_the_request_directly(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "example.invalid")
    async with HttpClient(HttpSettings(max_retries=0)) as http:
        with pytest.raises(SourceError):  # direct: the name does not resolve
            await http.get_json("http://social.example.invalid/x")
    assert _Proxy.seen == []


@pytest.mark.parametrize(("env", "url", "expected"), [
    ({"HTTPS_PROXY": "http://p:3128"}, "https://a.example/x", "http://p:3128"),
    ({"HTTPS_PROXY": "http://p:3128"}, "http://a.example/x", None),
    ({"ALL_PROXY": "http://p:1"}, "http://a.example/x", "http://p:1"),
    ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"}, "https://a.example/", "http://low:1"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example"}, "https://a.example/", None),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example"}, "https://notexample.org/", "http://p:1"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://a.example/", None),
])
def test_proxy_choice_follows_curl_conventions(env: dict[str, str], url: str,
                                               expected: str | None) -> None:
    assert EnvironmentProxies(env).proxy_for(httpx.URL(url)) == expected
