"""A fake t.me web preview on 127.0.0.1: ``GET /s/CHANNEL[?before=ID]`` as real-looking HTML.

Pages hold up to 20 messages, oldest first, inside the markup t.me serves
(``tgme_channel_info`` header with the subscriber count, then
``div.tgme_widget_message_wrap > div.tgme_widget_message[data-post="channel/ID"]``
with the author line, the text div with hashtag links ``<a href="?q=%23Tag">``,
views, and ``a.tgme_widget_message_date > time[datetime]``), and a "load more"
link ``a.tme_messages_more[data-before]`` when older messages exist.

The world of a channel mixes messages with followed tags, messages with other
tags, a photo without text, a service message ("Channel created"), a
forwarded message, and one message with its time missing (bad input the
collector must skip by name). Channels listed in ``private`` redirect to
``/CHANNEL`` (no preview), like t.me does. Faults (``rate_limit`` answers 429
with ``Retry-After``; ``status``, ``stall``, …) come from the shared queue.
"""

from __future__ import annotations

import html
import random
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from monitor.store.buckets import bucket_start
from tests.fakes.data import DISPLAY, TAGS
from tests.fakes.server import FakeBase, RunningServer, admin_routes, apply_fault

__all__ = ["TelegramFake", "TelegramMessage", "TelegramWorld", "start_telegram_fake"]

PAGE = 20
_SENTENCES = (
    "Statement from our newsroom on today's testimony.",
    "Survivors' voices, in their own words — thread below 👇",
    "Мы верим пострадавшим. Читайте материал.",
    "Ce soir : débat en direct, rejoignez-nous.",
    "Reminder: our helpline is open 24/7 <always> & free.",
)


@dataclass
class TelegramMessage:
    channel: str
    id: int
    created_at: datetime
    text: str | None  # None: media only
    tags: tuple[str, ...] = ()  # normalised followed tags in the text
    other_tags: tuple[str, ...] = ()
    service: bool = False
    forwarded: bool = False
    no_time: bool = False

    @property
    def key(self) -> str:
        return f"t.me/{self.channel}/{self.id}"


class TelegramWorld:
    """Messages of a few public channels over *hours* before now."""

    def __init__(self, *, seed: int = 7, channels: tuple[str, ...] = ("newsroom", "metoo_ru"),
                 per_channel: int = 45, hours: float = 3.0) -> None:
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.start = bucket_start(datetime.now(UTC) - timedelta(hours=hours, minutes=5))
        self.span = hours * 3600
        self.messages: dict[str, list[TelegramMessage]] = {}
        for channel in channels:
            msgs = [TelegramMessage(channel, 1, self.start, None, service=True)]
            offsets = sorted(self.rng.uniform(60, self.span) for _ in range(per_channel))
            for n, offset in enumerate(offsets):
                created = (self.start + timedelta(seconds=offset)).replace(microsecond=0)
                # ids grow by one per message; a gap now and then is a deleted message
                msgs.append(self._make(channel, msgs[-1].id + 1 + (n % 6 == 0), created, n))
            self.messages[channel] = msgs

    def _make(self, channel: str, mid: int, created: datetime, n: int) -> TelegramMessage:
        roll = n % 10
        if roll == 7:
            return TelegramMessage(channel, mid, created, None)  # a photo, no caption
        if roll == 8:
            return TelegramMessage(channel, mid, created, self.rng.choice(_SENTENCES),
                                   other_tags=("news",))
        tags = tuple(self.rng.sample(TAGS, self.rng.choice([1, 1, 2])))
        return TelegramMessage(channel, mid, created, self.rng.choice(_SENTENCES), tags=tags,
                               forwarded=roll == 3, no_time=(n == 5))

    def add(self, channel: str, tags: tuple[str, ...] = ("metoo",)) -> TelegramMessage:
        with self.lock:
            msgs = self.messages.setdefault(channel, [])
            mid = (msgs[-1].id if msgs else 0) + 1
            msg = TelegramMessage(channel, mid, datetime.now(UTC).replace(microsecond=0),
                                  "Breaking.", tags=tags)
            msgs.append(msg)
            return msg

    def followed(self) -> list[TelegramMessage]:
        """Messages the collector must keep (a followed tag and a readable time)."""
        with self.lock:
            return [m for msgs in self.messages.values() for m in msgs
                    if m.tags and m.text is not None and not m.no_time and not m.service]

    def expected(self) -> dict[tuple[str, str], tuple[datetime, tuple[str, ...]]]:
        """(platform, key) -> (created_at, tags) of every message to be stored."""
        return {("telegram", m.key): (m.created_at, m.tags) for m in self.followed()}

    def expected_keys(self) -> set[tuple[str, str]]:
        return {("telegram", m.key) for m in self.followed()}

    def expected_tag_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for m in self.followed():
            counts.update(m.tags)
        return dict(counts)

    def expected_bucket_counts(self) -> dict[tuple[str, datetime], int]:
        counts: Counter[tuple[str, datetime]] = Counter()
        for m in self.followed():
            counts.update((t, bucket_start(m.created_at)) for t in m.tags)
        return dict(counts)


def _text_html(msg: TelegramMessage) -> str:
    body = html.escape(msg.text or "", quote=False)
    words = [DISPLAY.get(t, t) for t in msg.tags] + list(msg.other_tags)
    links = " ".join(f'<a href="?q=%23{w}">#{w}</a>' for w in words)
    return (f'<div class="tgme_widget_message_text js-message_text" dir="auto">{body}'
            f'<br/><br/>{links}</div>')


def _message_html(msg: TelegramMessage, title: str) -> str:
    post = f"{msg.channel}/{msg.id}"
    if msg.service:
        return (f'<div class="tgme_widget_message_wrap js-widget_message_wrap">'
                f'<div class="tgme_widget_message text_not_supported_wrap service_message '
                f'js-widget_message" '
                f'data-post="{post}"><div class="tgme_widget_message_bubble">'
                f'<div class="message_media_not_supported_label">Channel created</div>'
                f'</div></div></div>')
    when = msg.created_at.isoformat()  # like t.me: 2024-01-15T12:34:56+00:00
    parts = [f'<div class="tgme_widget_message_wrap js-widget_message_wrap">'
             f'<div class="tgme_widget_message text_not_supported_wrap js-widget_message" '
             f'data-post="{post}" data-view="eyJjIjoxfQ">'
             f'<div class="tgme_widget_message_user"><a href="https://t.me/{msg.channel}">'
             f'<i class="tgme_widget_message_user_photo bgcolor0"></i></a></div>'
             f'<div class="tgme_widget_message_bubble">'
             f'<div class="tgme_widget_message_author accent_color">'
             f'<a class="tgme_widget_message_owner_name" href="https://t.me/{msg.channel}">'
             f'<span dir="auto">{html.escape(title)}</span></a></div>']
    if msg.forwarded:
        parts.append('<div class="tgme_widget_message_forwarded_from accent_color">Forwarded '
                     'from <a class="tgme_widget_message_forwarded_from_name" '
                     'href="https://t.me/other">Other</a></div>')
    if msg.text is None:
        parts.append('<a class="tgme_widget_message_photo_wrap" href="#" '
                     'style="width:800px;background-image:url(\'https://cdn.example/p.jpg\')"></a>')
    else:
        parts.append(_text_html(msg))
    time_html = "" if msg.no_time else (
        f'<time datetime="{when}" class="time">{msg.created_at:%H:%M}</time>')
    parts.append(f'<div class="tgme_widget_message_footer compact js-message_footer">'
                 f'<div class="tgme_widget_message_info short js-message_info">'
                 f'<span class="tgme_widget_message_views">1.2K</span>'
                 f'<span class="tgme_widget_message_meta"><a class="tgme_widget_message_date" '
                 f'href="https://t.me/{post}">{time_html}</a></span></div></div>'
                 f'</div></div></div>')
    return "".join(parts)


def render_page(channel: str, msgs: list[TelegramMessage], older: int | None) -> str:
    title = channel.replace("_", " ").title()
    more = (f'<div class="tgme_widget_message_centered js-messages_more_wrap">'
            f'<a href="/s/{channel}?before={older}" class="tme_messages_more js-messages_more" '
            f'data-before="{older}"></a></div>') if older is not None else ""
    body = "".join(_message_html(m, title) for m in msgs)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8">'
            f'<title>{html.escape(title)} – Telegram</title>'
            f'<meta property="og:title" content="{html.escape(title)}"></head>'
            f'<body class="widget_frame_base tgme_webpreview_body">'
            f'<header class="tgme_header"><div class="tgme_channel_info">'
            f'<div class="tgme_channel_info_header_title"><span dir="auto">{html.escape(title)}'
            f'</span></div><div class="tgme_channel_info_counters">'
            f'<div class="tgme_channel_info_counter"><span class="counter_value">12.3K</span> '
            f'<span class="counter_type">subscribers</span></div></div></div></header>'
            f'<main class="tgme_main"><section class="tgme_channel_history js-message_history">'
            f'{more}{body}</section></main></body></html>')


class TelegramFake(FakeBase):
    def __init__(self, world: TelegramWorld, *, private: tuple[str, ...] = ("secretgroup",)
                 ) -> None:
        super().__init__()
        self.world = world
        self.private = set(private)
        self.server: RunningServer | None = None
        self.app = Starlette(routes=[
            Route("/s/{channel}", self.preview),
            Route("/{channel}", self.landing),
            *admin_routes(self, self._admin_add, self._admin_expected),
        ])

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def page(self, channel: str, before: int | None) -> str:
        with self.world.lock:
            msgs = [m for m in self.world.messages.get(channel, [])
                    if before is None or m.id < before]
        chunk = msgs[-PAGE:]
        older = chunk[0].id if chunk and len(msgs) > PAGE else None
        return render_page(channel, chunk, older)

    async def preview(self, request: Request) -> Response:
        self.record(request)
        channel = request.path_params["channel"].lower()
        if channel in self.private or channel not in self.world.messages:
            return RedirectResponse(f"/{channel}", status_code=302)
        raw = request.query_params.get("before")
        before = int(raw) if raw and raw.isdigit() else None

        def body() -> Response:
            return HTMLResponse(self.page(channel, before))

        def limited(seconds: float) -> Response:
            return PlainTextResponse("Too Many Requests", status_code=429,
                                     headers={"Retry-After": f"{max(seconds, 0):g}"})

        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, body, limited)
        return body()

    async def landing(self, request: Request) -> Response:
        return HTMLResponse('<html><body><div class="tgme_page">If you have Telegram, you can '
                            'contact this channel right away.</div></body></html>')

    def _admin_add(self, data: dict[str, Any]) -> dict[str, Any]:
        channel = str(data.get("channel") or next(iter(self.world.messages)))
        msg = self.world.add(channel, tuple(data.get("tags") or ["metoo"]))
        return {"key": msg.key}

    def _admin_expected(self) -> dict[str, Any]:
        return {"tags": self.world.expected_tag_counts(), "posts": len(self.world.followed())}


def start_telegram_fake(world: TelegramWorld | None = None, *, port: int = 0) -> TelegramFake:
    from tests.fakes.server import run_app

    fake = TelegramFake(world or TelegramWorld())
    fake.server = run_app(fake.app, "telegram", port)
    return fake
