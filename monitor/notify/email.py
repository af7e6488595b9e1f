"""Email alerts: multipart text + HTML (Jinja2, autoescaped) with an inline chart.

One message per notification (a group of alerts, a "suppressed" notice or a
daily digest) for one recipient. ``Message-ID`` is derived from the
notification's idempotency key, so a re-send after a crash is recognisably the
same message. Post text (only when privacy allows) reaches the HTML part only
through autoescaping.
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

import aiosmtplib
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import Engine

from monitor.config import Config, PrivacySettings
from monitor.detect.explain import describe
from monitor.errors import NotifyError
from monitor.notify.base import Event, Notification, Notifier
from monitor.notify.chart import render_chart, sparkline
from monitor.notify.settings import Recipient
from monitor.store.posts import recent_posts
from monitor.store.queries import cotags
from monitor.store.windows import compare_periods, hourly_series, window_totals
from monitor.tags import normalise_tag

__all__ = ["EmailNotifier", "compose", "message_id", "subject_for", "thread_id"]

MAX_CHARTS = 4
MAX_LISTED = 50  # alerts listed in one email; the rest are counted
MAX_QUOTE = 280  # characters of a quoted post


@dataclass(frozen=True, slots=True)
class ExamplePost:
    """A post quoted in an alert: its text on one line, cut to MAX_QUOTE characters."""

    url: str | None
    text: str
    created_at: datetime
    compound: float | None


def example_posts(engine: Engine, privacy: PrivacySettings, tag: str, since: datetime,
                  until: datetime, limit: int) -> list[ExamplePost]:
    """A few recent posts of *tag*, only when privacy allows quoting them.

    Both ``privacy.store_text`` and ``privacy.example_posts_in_alerts`` must be
    true; sensitive posts (content warnings) and reposts are never quoted.
    """
    if limit <= 0 or not (privacy.store_text and privacy.example_posts_in_alerts):
        return []
    out = []
    for post in recent_posts(engine, tag, limit, since=since, until=until, quotable=True):
        text = " ".join(str(post.text).split())
        if len(text) > MAX_QUOTE:
            text = text[:MAX_QUOTE - 1] + "…"
        out.append(ExamplePost(post.url, text, post.created_at, post.compound))
    return out


def message_id(key: str) -> str:
    return f"<{key}@hashtag-monitor>"


def _thread_id(fingerprint: str) -> str:
    return f"<alert-{hashlib.sha256(fingerprint.encode()).hexdigest()[:24]}@hashtag-monitor>"


def thread_id(notification: Notification) -> str | None:
    """The Message-ID every notice of one alert group refers to, so mail clients thread
    them: the group's labels (``notify.grouping.group_by``) without ``state``, so a
    group's firing and resolved notices share it. With no grouping labels, a single
    alert threads on its fingerprint (as before grouping) and a mixed batch not at all.
    """
    labels = [(k, v) for k, v in notification.group if k != "state"]
    if labels:
        return _thread_id("group\x00" + "\x00".join(f"{k}={v}" for k, v in sorted(labels)))
    events = notification.events
    if len(events) == 1 and events[0].payload.get("fingerprint"):
        return _thread_id(str(events[0].payload["fingerprint"]))
    return None


def _parse_ts(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, str) and value:
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _fmt_num(value: Any, digits: int = 0) -> str:
    num = _number(value)
    if num is None:
        return "–"
    if digits == 0 and abs(num - round(num)) < 1e-9:
        return f"{round(num):,}"
    return f"{num:,.{digits or 2}f}"


def _fmt_age(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if mins and not days:
        parts.append(f"{mins}m")
    return " ".join(parts) or "<1m"


def _fmt_ts(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC") if ts else "–"


def _fmt_sentiment(value: float | None) -> str:
    if value is None:
        return "–"
    mood = "positive" if value >= 0.05 else "negative" if value <= -0.05 else "neutral"
    return f"{value:+.2f} ({mood})"


@dataclass
class AlertView:
    """What the templates show for one alert."""

    event: Event
    state: str
    rule: str
    rule_kind: str
    tag: str | None
    summary: str
    value: float | None
    threshold: float | None
    baseline: float | None
    ratio: float | None
    active_since: datetime | None
    resolved_at: datetime | None
    duration: str
    posts_last_hour: int | None = None
    sentiment_last_hour: float | None = None
    sparkline: str = ""
    chart_cid: str | None = None
    # the chart's and sparkline's last hour is the running one, counted up to this instant
    partial_until: datetime | None = None
    cotags: list[tuple[str, int]] = field(default_factory=list)
    examples: list[ExamplePost] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    # (label, text) lines: observed, expected (and its window), z / tail probability, parameters
    why: list[tuple[str, str]] = field(default_factory=list)

    @property
    def headline(self) -> str:
        """``#metoo volume 4.2x usual (1,234 posts/h)``: the subject without the state."""
        text = self.summary or f"{self.rule} = {_fmt_num(self.value, 2)}"
        if self.tag and f"#{self.tag}" not in text.casefold():
            text = f"#{self.tag} {text}"
        # volume context helps for volume and tone rules, not for a silent collector
        volume_kind = self.rule_kind in ("spike", "sentiment_shift", "")
        if volume_kind and self.posts_last_hour is not None and "/h" not in text:
            text += f" ({self.posts_last_hour:,} posts/h)"
        return text


def _view(event: Event, now: datetime) -> AlertView:
    p = event.payload
    value, threshold, baseline = (_number(p.get("value")), _number(p.get("threshold")),
                                  _number(p.get("baseline")))
    ratio = _number((p.get("annotations") or {}).get("ratio")) if isinstance(
        p.get("annotations"), dict) else None
    if ratio is None and p.get("kind") == "spike" and value is not None and baseline:
        ratio = value / baseline
    since = _parse_ts(p.get("active_since")) or _parse_ts(p.get("fired_at"))
    resolved = _parse_ts(p.get("resolved_at"))
    state = "RESOLVED" if event.state == "resolved" else (
        "STILL FIRING" if event.kind == "repeat" else "FIRING")
    if since is None:
        duration = ""
    elif resolved is not None:
        duration = f"lasted {_fmt_age(resolved - since)}"
    else:
        duration = f"for {_fmt_age(now - since)}"
    annotations = p.get("annotations")
    return AlertView(
        event=event, state=state, rule=event.rule, rule_kind=str(p.get("kind") or ""),
        tag=event.tag, summary=str(p.get("summary") or "").replace("\n", " ").strip(),
        value=value, threshold=threshold, baseline=baseline, ratio=ratio,
        active_since=since, resolved_at=resolved, duration=duration,
        labels={k: v for k, v in event.labels.items() if k != "tag"},
        annotations={k: v for k, v in annotations.items() if k != "explanation"}
        if isinstance(annotations, dict) else {},
        why=describe(annotations.get("explanation")) if isinstance(annotations, dict) else [],
    )


def subject_for(notification: Notification, views: list[AlertView], *, cap: int = 0) -> str:
    """An inbox-triageable subject, e.g. ``[FIRING] #metoo volume 4.2x usual (1,234 posts/h)``."""
    if notification.is_notice:
        n = len(notification.suppressed)
        return (f"[SUPPRESSED] {n:,} more alert{'s' if n != 1 else ''} held back "
                f"(limit {cap} emails/hour)")
    if len(views) == 1:
        return f"[{views[0].state}] {views[0].headline}"[:200]
    counts: dict[str, int] = {}
    for e in notification.events:  # all of them, not only the ones listed in the body
        key = "RESOLVED" if e.state == "resolved" else "FIRING"
        counts[key] = counts.get(key, 0) + 1
    head = ", ".join(f"{k}:{n}" for k, n in counts.items())
    rules = sorted({e.rule for e in notification.events})
    tags: list[str] = []
    for e in notification.events:
        if e.tag and f"#{e.tag}" not in tags:
            tags.append(f"#{e.tag}")
    shown = ", ".join(tags[:4]) + (f" +{len(tags) - 4} more" if len(tags) > 4 else "")
    return f"[{head}] {', '.join(rules[:3])}: {shown or 'no tag'}"[:200]


_env = Environment(
    loader=PackageLoader("monitor.notify", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["num"] = _fmt_num
_env.filters["ts"] = _fmt_ts
_env.filters["sentiment"] = _fmt_sentiment


@dataclass
class _Rendered:
    subject: str
    text: str
    html: str
    images: list[tuple[str, bytes]]
    references: str | None = None


def _alert_content(engine: Engine | None, config: Config, notification: Notification,
                   now: datetime) -> _Rendered:
    settings = config.notify.email
    events = list(notification.events)
    views = [_view(e, now) for e in events[:MAX_LISTED]]
    images: list[tuple[str, bytes]] = []
    charted: set[str] = set()
    for v in views:
        if engine is None or not v.tag:
            continue
        last_hour = window_totals(engine, [v.tag], now - timedelta(hours=1), now)[v.tag]
        v.posts_last_hour, v.sentiment_last_hour = last_hour.posts, last_hour.mean_compound
        # up to now, the running hour included: it is often the hour that caused the alert
        series = hourly_series(engine, v.tag, now - timedelta(days=settings.chart_days), now,
                               partial=True)
        v.sparkline = sparkline([float(x) for x in series.posts])
        v.partial_until = series.partial_until
        if v.tag not in charted and len(charted) < MAX_CHARTS:
            charted.add(v.tag)
            png = render_chart(series.hours, [float(x) for x in series.posts], tag=v.tag,
                               active_since=v.active_since, firing=v.state != "RESOLVED",
                               partial_until=series.partial_until)
            if png is not None:  # None without the charts extra: the sparkline stays
                cid = f"chart-{notification.key[:16]}-{len(images)}@hashtag-monitor"
                images.append((cid, png))
                v.chart_cid = cid
            window_start = (v.active_since or now) - timedelta(hours=1)
            if settings.cotags:
                v.cotags = [(c.tag, c.posts) for c in cotags(
                    engine, v.tag, min(window_start, now - timedelta(hours=24)), now,
                    settings.cotags, tone=False)]
            v.examples = example_posts(engine, config.privacy, v.tag, window_start, now,
                                       settings.example_posts)
    subject = subject_for(notification, views)
    ctx = {
        "subject": subject, "alerts": views, "more": max(len(events) - len(views), 0),
        "now": now, "days": settings.chart_days, "dashboard_url": settings.dashboard_url,
        "key": notification.key, "group": dict(notification.group),
    }
    references = thread_id(notification)
    return _Rendered(subject, _env.get_template("alert.txt").render(ctx),
                     _env.get_template("alert.html").render(ctx), images, references)


def _notice_content(notification: Notification, now: datetime) -> _Rendered:
    by_rule: dict[str, dict[str, int]] = {}
    for e in notification.suppressed:
        tags = by_rule.setdefault(e.rule, {})
        name = f"#{e.tag}" if e.tag else "(no tag)"
        tags[name] = tags.get(name, 0) + 1
    rows = []
    for rule, tags in sorted(by_rule.items()):
        top = sorted(tags.items(), key=lambda kv: -kv[1])[:12]  # most frequent first
        listed = ", ".join(f"{t}×{n}" if n > 1 else t for t, n in top)
        if len(tags) > 12:
            listed += f" +{len(tags) - 12} more"
        rows.append((rule, sum(tags.values()), listed))
    subject = subject_for(notification, [], cap=notification.cap)
    ctx = {"subject": subject, "count": len(notification.suppressed), "rows": rows,
           "cap": notification.cap, "now": now, "until": now + timedelta(hours=1),
           "key": notification.key}
    return _Rendered(subject, _env.get_template("notice.txt").render(ctx),
                     _env.get_template("notice.html").render(ctx), [])


def _digest_content(engine: Engine | None, config: Config, recipient: Recipient,
                    notification: Notification, now: datetime) -> _Rendered:
    day = str(notification.events[0].payload.get("date") or now.date().isoformat())
    tags = [normalise_tag(t) for t in recipient.tags or list(config.hashtags)]
    # the last day against the same weekday a week before
    week = (compare_periods(engine, tags, now - timedelta(days=1), now, back=timedelta(days=7))
            if engine is not None else {})
    rows = []
    for tag in tags:
        spark = ""
        if engine is not None:
            series = hourly_series(engine, tag, now - timedelta(days=7), now)
            spark = sparkline([float(x) for x in series.posts], width=42)
        t = week.get(tag)
        growth = t.growth if t is not None else None
        rows.append({"tag": tag, "posts": t.posts if t else 0, "prev": t.previous if t else 0,
                     "change": None if growth is None else growth * 100.0,
                     "sentiment": t.mean_compound if t else None, "spark": spark})
    subject = f"[DIGEST] {day}: " + ", ".join(
        f"#{r['tag']} {r['posts']:,}" for r in rows[:4]) + (" …" if len(rows) > 4 else "")
    ctx = {"subject": subject, "day": day, "rows": rows, "now": now,
           "dashboard_url": config.notify.email.dashboard_url, "key": notification.key}
    return _Rendered(subject[:200], _env.get_template("digest.txt").render(ctx),
                     _env.get_template("digest.html").render(ctx), [])


def compose(config: Config, engine: Engine | None, recipient: Recipient,
            notification: Notification, now: datetime | None = None) -> EmailMessage:
    """Build the MIME message for one notification to one recipient (blocking: DB + chart)."""
    now = now or datetime.now(UTC)
    if notification.is_notice:
        rendered = _notice_content(notification, now)
    elif notification.is_digest:
        rendered = _digest_content(engine, config, recipient, notification, now)
    else:
        rendered = _alert_content(engine, config, notification, now)
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = config.notify.email.sender
    msg["To"] = recipient.address
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(notification.key)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    msg["X-Hashtag-Monitor-Key"] = notification.key
    if rendered.references:
        msg["References"] = rendered.references
        msg["In-Reply-To"] = rendered.references
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    if rendered.images:
        html_part = msg.get_body(preferencelist=("html",))
        assert isinstance(html_part, EmailMessage)
        for cid, png in rendered.images:
            html_part.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>",
                                  filename=cid.split("@")[0] + ".png", disposition="inline")
    return msg


class EmailNotifier(Notifier):
    """Mail to one recipient (its own deliveries rows, grouping and hourly cap)."""

    def __init__(self, config: Config, recipient: Recipient, *, engine: Engine | None = None,
                 clock: Any = None) -> None:
        address = recipient.address
        name = f"email:{address}"
        if len(name) > 64:  # deliveries.notifier is 64 chars
            name = "email:" + hashlib.sha256(address.encode()).hexdigest()[:32]
        super().__init__(
            name=name, grouped=True, rules=frozenset(recipient.rules),
            tags=frozenset(recipient.tags),
            wants_digest=config.notify.email.digest.enabled and recipient.digest,
        )
        self.config = config
        self.recipient = recipient
        self.engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))

    def bind(self, engine: Engine) -> None:
        if self.engine is None:
            self.engine = engine

    async def send(self, notification: Notification) -> None:
        msg = await asyncio.to_thread(compose, self.config, self.engine, self.recipient,
                                      notification, self._clock())
        smtp = self.config.notify.email.smtp
        where = f"smtp://{smtp.host}:{smtp.port}"
        # headers unfolded up to RFC 5322's 998: the stdlib folds a long subject at 78
        # by moving all of it to a continuation line, which clients show with a
        # leading space
        data = msg.as_bytes(policy=email.policy.SMTP.clone(max_line_length=998))
        try:
            await aiosmtplib.send(
                data,
                sender=parseaddr(self.config.notify.email.sender)[1] or "monitor@localhost",
                recipients=[self.recipient.address],
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username or None,
                password=smtp.password or None,
                use_tls=smtp.security == "tls",
                start_tls=smtp.security == "starttls",
                validate_certs=smtp.validate_certs,
                cert_bundle=smtp.ca_file or None,
                timeout=smtp.timeout.total_seconds(),
            )
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError) as exc:
            raise NotifyError(f"email via {where}: cannot connect: {exc}") from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise NotifyError(f"email via {where}: login as {smtp.username!r} refused: "
                              f"{exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPException as exc:
            raise NotifyError(f"email to {formataddr(('', self.recipient.address))} via "
                              f"{where}: {type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise NotifyError(f"email via {where}: cannot connect: {exc}") from exc
