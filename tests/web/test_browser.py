"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium via Playwright):
the charts show the seeded numbers, nothing logs an error, markup in posts and tags
stays text; ranges of 1 h and 6 h, a URL that reproduces the view, alert markers on the
charts, and a page readable at 390 and 1400 px. With CI set a missing Chromium fails
the test; elsewhere it skips."""

from __future__ import annotations

import itertools
import math
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import Engine

from monitor.config import Config
from monitor.store.db import make_engine, migrate
from monitor.store.write import write_batch
from tests.analyse.seed import scored
from tests.web.conftest import EVIL_TAG, EVIL_TEXT, Seeded, seed, serve
from tests.web.test_views import add_history

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MONITOR_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _require_chromium() -> None:
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return
    message = f"{CHROMIUM} not found (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: .ci/run must install it)")
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    # one dialect is enough here: the API tests already run on both
    engine = make_engine(f"sqlite:///{tmp_path}/browser.db")
    migrate(engine)
    yield engine
    engine.dispose()


def test_dashboard_shows_seeded_numbers_without_errors_or_injection(
    browser: Any, sqlite_engine: Engine, web_config: Config, tmp_path: Path
) -> None:
    seeded: Seeded = seed(sqlite_engine)
    problems: list[str] = []
    with serve(sqlite_engine, web_config) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.goto(f"{base}/?tags=metoo,notallmen&since=7d&step=1h")
        page.wait_for_selector("body[data-ready]", timeout=20_000)
        assert page.get_attribute("body", "data-ready") == "1", page.text_content("#status")

        # the volume chart has one line per tag carrying the seeded totals
        volume = page.locator("#volume-chart svg")
        assert volume.get_attribute("data-series") == "2"
        assert int(volume.get_attribute("data-points") or 0) >= 168
        lines = page.locator("#volume-chart path[data-tag='metoo']")
        assert lines.get_attribute("data-total") == str(seeded.metoo_posts)
        assert page.locator("#volume-chart path[data-tag='notallmen']").get_attribute(
            "data-total") == str(seeded.notallmen_posts)
        assert "#metoo · 4 posts" in page.text_content("#volume-chart .legend")
        assert page.locator("#sentiment-chart svg path[data-tag='metoo']").count() == 1
        # hovering a chart shows the values of that step for every tag
        volume.hover(position={"x": 600, "y": 100})
        tip = page.locator("#volume-chart .tooltip")
        assert tip.is_visible() and "metoo:" in (tip.text_content() or "")
        # the visible totals table says the same
        row = page.locator("#totals tr[data-tag='metoo']")
        assert row.locator("[data-field='posts']").text_content() == "4"
        assert row.locator("[data-field='scored']").text_content() == "3"
        assert row.locator("[data-field='mean']").text_content() == f"+{seeded.metoo_mean:.3f}"

        # alerts, co-tags, relate (alpha → beta lag of 3 h seeded in the buckets)
        assert page.locator("#alerts tbody tr").count() == 2
        assert "metoo-spike" in page.text_content("#alerts")
        assert page.locator("#cotags tr[data-tag='howiwillchange']").count() == 1
        page.select_option("#relate-a", "alpha")
        page.select_option("#relate-b", "beta")
        page.select_option("#relate-range", "30d")
        page.wait_for_selector("#relate-summary[data-best-lag='3']", timeout=10_000)
        assert "3 h after #alpha" in page.text_content("#relate-summary")
        assert page.locator("#relate-chart rect[data-lag]").count() == 97

        # markup from posts, tags and alerts is shown as text, never run or parsed
        assert page.evaluate("window.__pwned") is None
        assert EVIL_TEXT in page.text_content("#posts")
        assert "#" + EVIL_TAG in page.text_content("#cotags")
        assert "#" + EVIL_TAG in page.text_content("#tag-picker")
        assert '<img src=x onerror="window.__pwned=3">' in page.text_content("#alerts")
        assert page.locator("main img, main script, main b").count() == 0
        assert page.evaluate("document.querySelectorAll('script').length") == 2

        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        page.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    assert problems == []


# ---------------------------------------------------------------- issue 15: the views

def _watch(page: Any, problems: list[str]) -> None:
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))


def _open(page: Any, url: str) -> None:
    page.goto(url)
    _ready(page)


def _ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready]", timeout=20_000)
    assert page.get_attribute("body", "data-ready") == "1", page.text_content("#status")


def _change(page: Any, selector: str, value: str) -> None:
    """Pick *value* in a control that refreshes the view, and wait for the new view."""
    page.evaluate("document.body.removeAttribute('data-ready')")
    page.select_option(selector, value)
    _ready(page)


def _query(page: Any) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(page.url).query))


def _expected_points(page: Any) -> int:
    """Whole steps from the first shown step to the one holding the range's end."""
    chart = page.locator("#volume-chart")
    start = datetime.fromisoformat(chart.get_attribute("data-since") or "")
    end = datetime.fromisoformat(chart.get_attribute("data-until") or "")
    step = int(chart.get_attribute("data-step") or 0)
    return math.ceil((end - start).total_seconds() / step)


def _seed_views(engine: Engine) -> Seeded:
    """The usual seed, a metoo post 20 minutes ago (the last hour is not empty), a
    notallmen alert resolved 4 h ago and a metoo one resolved 3 days ago."""
    seeded = seed(engine)
    write_batch(engine, [scored("now", seeded.now - timedelta(minutes=20), ("metoo",), 0.3)])
    add_history(engine, seeded.now)
    return seeded


def test_short_ranges_alert_markers_and_the_url_round_trip(
    browser: Any, sqlite_engine: Engine, web_config: Config
) -> None:
    _seed_views(sqlite_engine)
    problems: list[str] = []
    with serve(sqlite_engine, web_config) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        _watch(page, problems)
        # a link with since=6h opens the 6-hour view, at 5-minute steps
        _open(page, f"{base}/?tags=metoo,notallmen&since=6h")
        assert page.input_value("#range") == "6h"
        volume = page.locator("#volume-chart svg")
        points = int(volume.get_attribute("data-points") or 0)
        assert page.get_attribute("#volume-chart", "data-step") == "300"
        assert points == _expected_points(page) and points in (72, 73)
        assert page.locator("#volume-chart path[data-tag='metoo']").get_attribute(
            "data-total") == "3"
        # the markers: the firing metoo alert and the notallmen one resolved 4 h ago,
        # each with the flag where it fired; not the pending alert of an unshown tag,
        # not the one resolved 3 days ago
        marks = page.locator("#volume-chart g.alert-mark")
        assert sorted(marks.evaluate_all("els => els.map(e => e.dataset.rule)")) == [
            "metoo-spike", "notallmen-spike"]
        assert page.locator("#volume-chart g.alert-mark .alert-flag").count() == 2
        assert page.locator("#sentiment-chart g.alert-mark").count() == 2
        assert volume.get_attribute("data-alerts") == "2"
        firing = page.locator("#volume-chart g.alert-mark[data-rule='metoo-spike']")
        assert firing.get_attribute("data-state") == "firing"
        assert "#metoo volume 4.2x" in (firing.locator("title").text_content() or "")
        assert "2 alerts" in page.text_content("#volume-chart .legend")
        # a marker is drawn inside the plot, where its time is: the resolved alert
        # (5 h to 4 h ago) lies left of the firing one (3 h ago until now)
        band = lambda rule: page.locator(  # noqa: E731
            f"#volume-chart g.alert-mark[data-rule='{rule}'] .alert-band").bounding_box()
        old, now = band("notallmen-spike"), band("metoo-spike")
        box = volume.bounding_box()
        assert box["x"] < old["x"] < old["x"] + old["width"] <= now["x"]
        assert now["x"] + now["width"] <= box["x"] + box["width"] + 1
        # hovering a step inside an alert names it
        volume.hover(position={"x": box["width"] - 20, "y": 60})
        assert "alert: metoo-spike (firing)" in (
            page.text_content("#volume-chart .tooltip") or "")

        # the last hour: 12 (or 13) points, the post of 20 minutes ago, and the firing
        # alert as a band only (it fired before the hour began)
        _change(page, "#range", "1h")
        assert _query(page) == {"tags": "metoo,notallmen", "since": "1h", "step": "auto"}
        points = int(volume.get_attribute("data-points") or 0)
        assert points == _expected_points(page) and points in (12, 13)
        assert page.locator("#volume-chart path[data-tag='metoo']").get_attribute(
            "data-total") == "1"
        assert marks.evaluate_all("els => els.map(e => e.dataset.rule)") == ["metoo-spike"]
        assert page.locator("#volume-chart .alert-flag").count() == 0

        # the user's choices go into the URL, and that URL opens the same view
        _change(page, "#range", "6h")
        _change(page, "#step", "15m")
        assert _query(page) == {"tags": "metoo,notallmen", "since": "6h", "step": "15m"}
        assert int(volume.get_attribute("data-points") or 0) in (24, 25)
        link = page.url
        other = browser.new_page(viewport={"width": 1400, "height": 1000})
        _watch(other, problems)
        _open(other, link)
        assert (other.input_value("#range"), other.input_value("#step")) == ("6h", "15m")
        checked = other.locator("#tag-picker input:checked").evaluate_all(
            "els => els.map(e => e.value)")
        assert checked == ["metoo", "notallmen"]
        for attr in ("data-points", "data-alerts"):
            assert (other.get_attribute("#volume-chart svg", attr)
                    == volume.get_attribute(attr))
        assert other.url == link
        other.close()
        # back walks to the previous view
        page.evaluate("document.body.removeAttribute('data-ready')")
        page.go_back()
        _ready(page)
        assert page.input_value("#step") == "auto" and _query(page)["step"] == "auto"

        # values that are not among the menu's entries are honoured too
        _open(page, f"{base}/?tags=notallmen&since=12h&step=30m")
        assert (page.input_value("#range"), page.input_value("#step")) == ("12h", "30m")
        assert int(volume.get_attribute("data-points") or 0) in (24, 25)
        assert volume.get_attribute("data-series") == "1"
        _open(page, f"{base}/?tags=metoo&since=2026-01-01&until=2026-01-02T06:00&step=1h")
        assert page.input_value("#range") == "custom"
        assert page.input_value("#from") == "2026-01-01T00:00"
        assert page.input_value("#to") == "2026-01-02T06:00"
        assert int(volume.get_attribute("data-points") or 0) == 30
        assert _query(page) == {"tags": "metoo", "since": "2026-01-01",
                                "until": "2026-01-02T06:00", "step": "1h"}
        page.close()
    assert problems == []


# Words that wrap inside themselves: for every word of every cell, the lines its
# glyphs fall on. A word on two lines is broken; that is acceptable only for a word
# wider than half its table (a URL, a hostile tag), never because a column was
# squeezed narrower than "pending" (what the table did before).
BROKEN_WORDS = """(selector) => {
  const canvas = document.createElement("canvas").getContext("2d");
  const out = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const style = getComputedStyle(node.parentElement);
      canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
      const re = /\\S+/g;
      for (let m = re.exec(node.data); m; m = re.exec(node.data)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        if (tops.size < 2) continue;
        const room = cell.closest("table").clientWidth / 2;
        const width = canvas.measureText(m[0]).width;
        if (width <= room) out.push(`${m[0]} (${Math.round(width)} px of ${Math.round(2 * room)})`);
      }
    }
  }
  return out;
}"""

OVERFLOWING = """(selector) => [...document.querySelectorAll(selector)]
  .filter((e) => e.scrollWidth > e.clientWidth + 1)
  .map((e) => `${e.tagName} ${e.textContent.slice(0, 40)}: ${e.scrollWidth} > ${e.clientWidth}`)"""


@pytest.mark.parametrize("width", [390, 1400])
def test_readable_on_a_phone_and_a_wide_screen(
    browser: Any, sqlite_engine: Engine, web_config: Config, tmp_path: Path, width: int
) -> None:
    _seed_views(sqlite_engine)
    problems: list[str] = []
    with serve(sqlite_engine, web_config) as base:
        page = browser.new_page(viewport={"width": width, "height": 900})
        _watch(page, problems)
        _open(page, f"{base}/?tags=metoo,notallmen&since=6h")
        page.select_option("#alert-state", "all")  # reloads the alerts list alone
        page.wait_for_selector("#alerts tbody tr:nth-child(5)", timeout=10_000)
        assert page.locator("#alerts tbody tr").count() == 5

        # nothing is wider than the screen: no sideways scrolling
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        wide = page.evaluate("""(w) => [...document.querySelectorAll('body *')]
            .filter((e) => e.getBoundingClientRect().right > w + 1)
            .map((e) => e.tagName + '#' + e.id + '.' + e.className)""", width)
        assert wide == []
        # table cells: nothing spills, and no word wraps in the middle ("pend ing",
        # "firin g", "val ue" before) when it fits on a line of its own
        cells = "#alerts th, #alerts td, #totals th, #totals td, #cotags th, #cotags td"
        assert page.evaluate(OVERFLOWING, cells) == []
        assert page.evaluate(BROKEN_WORDS, cells) == []
        state = page.locator("#alerts tbody td.state").first
        assert state.evaluate("e => getComputedStyle(e).overflowWrap") != "anywhere"
        assert state.evaluate("e => getComputedStyle(e).wordBreak") == "normal"
        for word in ("firing", "pending", "resolved", "metoo-spike"):
            assert word in page.text_content("#alerts")
        if width < 640:
            # a phone shows each alert as a card: every value beside its column's name
            assert page.locator("#alerts thead").is_hidden()
            assert page.locator("#alerts td.state").first.get_attribute(
                "data-label") == "state"
        else:
            assert page.locator("#alerts thead").is_visible()
        # the charts are drawn at their own width: axis text is not scaled down
        chart = page.locator("#volume-chart svg")
        box = chart.bounding_box()
        assert box["width"] <= width
        assert abs(box["width"] - float(chart.get_attribute("width") or 0)) <= 1
        sizes = page.locator("#volume-chart .axis text").evaluate_all(
            "els => els.map((e) => e.getBoundingClientRect().height)")
        assert len(sizes) >= 4 and min(sizes) >= 10
        # the axis labels do not overlap
        lefts = page.locator("#volume-chart .axis text[text-anchor]").evaluate_all(
            "els => els.filter((e) => e.getAttribute('y') > 100).map((e) => "
            "{ const r = e.getBoundingClientRect(); return [r.left, r.right]; })")
        lefts.sort()
        assert len(lefts) >= 2
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(lefts)), lefts
        assert page.locator("#volume-chart g.alert-mark").count() == 2

        shot = tmp_path / f"dashboard-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        page.close()
    assert shot.stat().st_size > 10_000
    assert problems == []
