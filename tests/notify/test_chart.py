"""The chart and sparkline a reader sees in an alert email."""

from __future__ import annotations

import struct
from datetime import timedelta

from monitor.notify.chart import SPARK_CHARS, render_chart, sparkline
from tests.notify.conftest import NOW


def test_sparkline_keeps_a_short_spike_visible_in_a_long_series() -> None:
    week = [10.0] * 168
    week[100] = 80.0  # one busy hour in seven days
    line = sparkline(week, width=42)
    assert len(line) == 42
    assert line.count(SPARK_CHARS[-1]) == 1 and line[25] == SPARK_CHARS[-1]
    assert set(line) - {SPARK_CHARS[-1]} == {SPARK_CHARS[1]}  # 10/80 of the height
    assert sparkline([0, 0, 0]) == SPARK_CHARS[0] * 3
    assert sparkline([]) == ""


def test_chart_is_a_700_by_220_png_even_without_data() -> None:
    hours = [NOW - timedelta(hours=h) for h in range(72, 0, -1)]
    for times, values in ((hours, [float(h % 7) for h in range(72)]), ([], [])):
        png = render_chart(times, values, tag="metoo", active_since=NOW - timedelta(hours=2))
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == (700, 220)
