"""The read-only dashboard, its JSON API, ``/metrics`` and ``/healthz``.

Everything is served from this process with local assets (no CDN: users run
this on closed networks). The page is static HTML + hand-written JS that draws
SVG from ``/api/*``; the API is documented in the README and meant for scripts
as well.

Access: bound to loopback by default. When ``web.token`` is set (required off
loopback, whatever ``web.enabled`` says: :func:`monitor.web.server.serve`
refuses to start without it), ``/api/*`` and ``/metrics`` need
``Authorization: Bearer TOKEN``, or the signed ``monitor_session`` cookie
(:mod:`monitor.web.session`; HttpOnly, SameSite=Strict, Secure behind TLS) the
page sets after it is opened once as ``/?token=TOKEN``. ``/healthz`` stays open
for probes; the page and its assets hold no data.

Load: every API request has ``web.request_budget`` (default 10 s), then it is
answered 503; the range queries (series, top, cotags, relate) run at most
``web.heavy_queries`` at a time (others wait within their budget, then 503).
Ranges and step counts are capped in :mod:`monitor.analyse.timerange` and
:mod:`monitor.store.queries`; a range past the cap is clipped to the data that
exists before it is refused with a 400.

API (all GET, JSON; times ISO-8601 UTC; ranges take ``since``/``until`` as a
duration back like ``7d`` or an ISO date):

- ``/api/tags`` — followed tags and the busiest tags of the last 7 days
- ``/api/series?tag=A&tag=B&since=7d&until=&step=auto|5m|1h|1d``
- ``/api/top?since=24h&limit=20&by=volume|growth``
- ``/api/cotags?tag=A&since=30d&limit=20``
- ``/api/relate?a=A&b=B&since=90d&max_lag=48``
- ``/api/alerts?state=active|all&limit=100[&tag=A&since=6h&until=]`` — with ``tag`` or a
  range: the alerts of those tags whose latest episode overlaps it (the charts' markers)
- ``/api/posts?tag=A&limit=20`` — recent posts (text only if privacy.store_text; never
  authors; links only under privacy.authors: keep, since a post URL names its author)
- ``/api/health`` — per-stream collector health
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.analyse.relate import relate, relation_dict
from monitor.analyse.timerange import auto_step, parse_range, parse_step
from monitor.config import Config
from monitor.errors import InputError, MonitorError
from monitor.metrics import build_registry
from monitor.store.alerts import alerts_overlapping, recent_alerts
from monitor.store.budget import budgeted
from monitor.store.health import database_answers, read_status
from monitor.store.posts import recent_posts
from monitor.store.queries import cotags, series, top_tags
from monitor.tags import normalise_tag
from monitor.web.session import COOKIE, SESSION_SECONDS, make_session, valid_session

__all__ = ["create_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_LIMIT = 500

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

Handler = Callable[[Request], Any]


class _SecurityHeaders:
    """Adds a strict CSP and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _limit(request: Request, default: int) -> int:
    raw = request.query_params.get("limit", str(default))
    try:
        value = int(raw)
    except ValueError:
        raise InputError("limit", f"expected a whole number, got {raw!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise InputError("limit", f"expected 1 to {MAX_LIMIT}, got {value}")
    return value


def _tag(raw: str | None, name: str) -> str:
    tag = normalise_tag(raw or "")
    if not tag:
        raise InputError(name, f"expected a hashtag like 'metoo', got {raw!r}")
    return tag


def _range(request: Request, default_since: str) -> tuple[datetime, datetime]:
    q = request.query_params
    return parse_range(q.get("since") or default_since, q.get("until") or None,
                       since_name="since", until_name="until")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class _Api:
    """The JSON endpoints; sync functions, so Starlette runs them in its thread pool."""

    def __init__(self, engine: Engine, config: Config) -> None:
        self.engine = engine
        self.config = config

    def tags(self, request: Request) -> JSONResponse:
        now = datetime.now(UTC)
        busy = top_tags(self.engine, now - timedelta(days=7), now, 20)
        return JSONResponse({"followed": list(self.config.hashtags),
                             "busy": [{"tag": t.tag, "posts": t.posts} for t in busy]})

    def series(self, request: Request) -> JSONResponse:
        raw = request.query_params.getlist("tag") or list(self.config.hashtags)
        if len(raw) > 12:
            raise InputError("tag", f"expected at most 12 tags, got {len(raw)}")
        tags = [_tag(t, "tag") for t in raw]
        start, end = _range(request, "7d")
        step_raw = request.query_params.get("step", "auto")
        step = auto_step(start, end) if step_raw == "auto" else parse_step(step_raw, "step")
        points = series(self.engine, tags, start, end, step)
        out: dict[str, dict[str, Any]] = {
            t: {"tag": t, "posts": 0, "scored": 0, "positive": 0, "neutral": 0, "negative": 0,
                "compound_sum": 0.0, "points": []}
            for t in dict.fromkeys(tags)
        }
        for p in points:
            entry = out[p.tag]
            entry["points"].append([p.bucket.isoformat(), p.posts, p.scored, p.mean_compound,
                                    p.positive, p.neutral, p.negative])
            entry["posts"] += p.posts
            entry["scored"] += p.scored
            entry["positive"] += p.positive
            entry["neutral"] += p.neutral
            entry["negative"] += p.negative
            if p.mean_compound is not None:
                entry["compound_sum"] += p.mean_compound * p.scored
        for entry in out.values():
            csum = entry.pop("compound_sum")
            entry["mean_compound"] = csum / entry["scored"] if entry["scored"] else None
        return JSONResponse({
            "since": _iso(points[0].bucket if points else start), "until": _iso(end),
            "step_seconds": int(step.total_seconds()),
            "columns": ["bucket", "posts", "scored", "mean_compound", "positive", "neutral",
                        "negative"],
            "series": list(out.values()),
        })

    def top(self, request: Request) -> JSONResponse:
        start, end = _range(request, "24h")
        by = request.query_params.get("by", "volume")
        found = top_tags(self.engine, start, end, _limit(request, 20), order=by)
        return JSONResponse({"since": _iso(start), "until": _iso(end), "by": by, "tags": [
            {"tag": t.tag, "posts": t.posts, "previous": t.previous, "growth": t.growth,
             "scored": t.scored, "mean_compound": t.mean_compound} for t in found]})

    def cotags(self, request: Request) -> JSONResponse:
        tag = _tag(request.query_params.get("tag"), "tag")
        start, end = _range(request, "30d")
        found = cotags(self.engine, tag, start, end, _limit(request, 20))
        return JSONResponse({"tag": tag, "since": _iso(start), "until": _iso(end), "cotags": [
            {"tag": c.tag, "posts": c.posts, "share": c.share, "scored": c.scored,
             "mean_compound": c.mean_compound} for c in found]})

    def relate(self, request: Request) -> JSONResponse:
        q = request.query_params
        a, b = _tag(q.get("a"), "a"), _tag(q.get("b"), "b")
        start, end = _range(request, "90d")
        raw_lag = q.get("max_lag", "48")
        if not raw_lag.isdigit():
            raise InputError("max_lag", f"expected a whole number of hours, got {raw_lag!r}")
        rel = relate(self.engine, a, b, start, end, max_lag=int(raw_lag))
        # relation_dict carries the sentence ("summary") and the sign convention
        return JSONResponse(relation_dict(rel))

    def alerts(self, request: Request) -> JSONResponse:
        state = request.query_params.get("state", "active")
        if state not in ("active", "all", "firing", "pending", "resolved"):
            raise InputError("state", f"expected active, all, firing, pending or resolved, "
                                      f"got {state!r}")
        states = (None if state == "all" else ("firing", "pending") if state == "active"
                  else (state,))
        limit = _limit(request, 100)
        q = request.query_params
        if q.get("since") or q.get("until") or q.getlist("tag"):
            # the charts' markers: alerts of these tags (a "tag" label) whose latest
            # episode overlaps the range
            raw = q.getlist("tag")
            if len(raw) > 12:
                raise InputError("tag", f"expected at most 12 tags, got {len(raw)}")
            tags = {_tag(t, "tag") for t in raw}
            start, end = _range(request, "7d")
            rows = [r for r in alerts_overlapping(self.engine, start, end)
                    if (states is None or r.state in states)
                    and (not tags or r.labels.get("tag") in tags)][:limit]
        else:
            rows = recent_alerts(self.engine, states, limit=limit)
        return JSONResponse({"alerts": [
            {"id": r.id, "rule": r.rule, "labels": r.labels, "state": r.state,
             "active_since": _iso(r.active_since), "fired_at": _iso(r.fired_at),
             "resolved_at": _iso(r.resolved_at), "value": r.value, "summary": r.summary}
            for r in rows]})

    def posts(self, request: Request) -> JSONResponse:
        tag = _tag(request.query_params.get("tag"), "tag")
        rows = recent_posts(self.engine, tag, _limit(request, 20))
        show_text = self.config.privacy.store_text
        # a Mastodon or Bluesky post URL names its author: only under authors: keep
        show_url = self.config.privacy.authors == "keep"
        return JSONResponse({"tag": tag, "text_stored": show_text, "posts": [
            {"platform": r.platform, "url": r.url if show_url else None,
             "created_at": _iso(r.created_at),
             "lang": r.lang, "text": r.text if show_text else None, "sensitive": r.sensitive,
             "text_truncated": r.text_truncated,
             "compound": r.compound} for r in rows]})

    def health(self, request: Request) -> JSONResponse:
        rows = read_status(self.engine)
        return JSONResponse({"streams": [
            {"source": r.source, "stream": r.stream, "last_success_at": _iso(r.last_success_at),
             "last_error_at": _iso(r.last_error_at), "last_error": r.last_error,
             "last_post_at": _iso(r.last_post_at), "lag_seconds": r.lag_seconds,
             "posts_collected": r.posts_collected, "posts_rejected": r.posts_rejected,
             "fetch_errors": r.fetch_errors} for r in rows]})


class _Limits:
    """The per-request time budget and the slots of heavy (range) queries."""

    def __init__(self, budget: float, heavy: int) -> None:
        self.budget = budget
        self.heavy = heavy
        self._slots: asyncio.Semaphore | None = None

    def slots(self) -> asyncio.Semaphore:
        # made on first use, inside the server's event loop
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.heavy)
        return self._slots


def _busy(message: str) -> JSONResponse:
    response = _problem(503, message)
    response.headers["retry-after"] = "5"
    return response


def _guarded(fn: Handler, token: str | None, limits: _Limits | None = None, *,
             heavy: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an endpoint: token check, time budget, heavy-query slots, and our errors as
    JSON 400/503 (never a traceback)."""

    async def endpoint(request: Request) -> Response:
        if token is not None and not _authorised(request, token):
            return _problem(401, "missing or wrong access token")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (limits.budget if limits else 3600.0)
        slots = limits.slots() if limits is not None and heavy else None
        if slots is not None:
            try:
                await asyncio.wait_for(slots.acquire(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                return _busy(f"busy: {limits.heavy if limits else 0} range queries are "
                             "running; retry in a few seconds")
        # a plain executor future: a request past its budget is answered at once, and
        # its slot is given back only when the thread really ends (a thread cannot be
        # stopped), so abandoned work still counts against web.heavy_queries
        work = loop.run_in_executor(None, fn, request)
        if slots is not None:
            work.add_done_callback(lambda _f: slots.release())
        try:
            result: Response = await asyncio.wait_for(asyncio.shield(work),
                                                      max(deadline - loop.time(), 0.001))
        except TimeoutError:
            work.add_done_callback(_drop_result)
            log.warning("web: %s took longer than its %.0fs budget; answered 503",
                        request.url.path, limits.budget if limits else 0)
            return _busy(f"the query took longer than {limits.budget if limits else 0:g}s; "
                         "ask for a shorter range or a larger step")
        except InputError as exc:
            return _problem(400, str(exc))
        except MonitorError as exc:
            return _problem(503, str(exc))
        except SQLAlchemyError as exc:
            log.warning("web: database error on %s: %s", request.url.path, type(exc).__name__)
            return _problem(503, "the database is unavailable")
        return result

    return endpoint


def _drop_result(work: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned request's outcome, so asyncio does not log it as lost."""
    if not work.cancelled():
        work.exception()


def _authorised(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return hmac.compare_digest(header[7:].encode(), token.encode())
    return valid_session(request.cookies.get(COOKIE), token)


def create_app(engine: Engine, config: Config) -> Starlette:
    """The dashboard app over *engine*; serve it with uvicorn (the service does)."""
    token = config.web.token
    limits = _Limits(config.web.request_budget.total_seconds(), config.web.heavy_queries)
    # PostgreSQL cancels a query once the request's budget is spent (not only the answer)
    engine = budgeted(engine, limits.budget)
    api = _Api(engine, config)
    registry = build_registry(engine)

    async def index(request: Request) -> Response:
        offered = request.query_params.get("token")
        if offered is not None:
            # trade the token in the URL for a cookie, and drop it from the address bar
            if token is None or not hmac.compare_digest(offered.encode(), token.encode()):
                return _problem(401, "wrong access token")
            # the rest of the query (tags, since, step) is the view: keep it
            rest = urlencode([(k, v) for k, v in request.query_params.multi_items()
                              if k != "token"])
            response: Response = RedirectResponse("/?" + rest if rest else "/",
                                                  status_code=303)
            # a signed session value, not the token: see monitor.web.session
            response.set_cookie(COOKIE, make_session(token), max_age=SESSION_SECONDS,
                                httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
            return response
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-store"})

    def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def healthz(request: Request) -> JSONResponse:
        if not database_answers(engine):
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    routes = [
        Route("/", index),
        Route("/healthz", _guarded(healthz, None)),
        Route("/metrics", _guarded(metrics, token, limits)),
        Route("/api/tags", _guarded(api.tags, token, limits)),
        Route("/api/series", _guarded(api.series, token, limits, heavy=True)),
        Route("/api/top", _guarded(api.top, token, limits, heavy=True)),
        Route("/api/cotags", _guarded(api.cotags, token, limits, heavy=True)),
        Route("/api/relate", _guarded(api.relate, token, limits, heavy=True)),
        Route("/api/alerts", _guarded(api.alerts, token, limits)),
        Route("/api/posts", _guarded(api.posts, token, limits)),
        Route("/api/health", _guarded(api.health, token, limits)),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_SecurityHeaders)
    return app
