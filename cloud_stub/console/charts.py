"""Geometry for the server-rendered SVG: bar charts of the transparency report and a
request's window on a timeline. Numbers only; the templates draw them (labels escaped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

CHART_WIDTH = 640
LABEL_WIDTH = 200
BAR_HEIGHT = 22
BAR_GAP = 8
TIMELINE_WIDTH = 640


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    y: int
    width: int


@dataclass(frozen=True, slots=True)
class BarChart:
    id: str
    title: str
    bars: list[Bar]
    width: int
    height: int
    label_width: int


def bar_chart(chart_id: str, title: str, counts: Mapping[str, int]) -> BarChart:
    """Horizontal bars, longest for the largest count; an empty chart has no bars."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    most = max((v for _, v in items), default=0)
    room = CHART_WIDTH - LABEL_WIDTH - 60
    bars = [
        Bar(label=label, value=value, y=i * (BAR_HEIGHT + BAR_GAP),
            width=0 if most == 0 else max(2, round(room * value / most)))
        for i, (label, value) in enumerate(items)
    ]
    height = max(BAR_HEIGHT, len(bars) * (BAR_HEIGHT + BAR_GAP))
    return BarChart(chart_id, title, bars, CHART_WIDTH, height, LABEL_WIDTH)


@dataclass(frozen=True, slots=True)
class Mark:
    label: str
    at: datetime
    x: int


@dataclass(frozen=True, slots=True)
class Timeline:
    start: datetime
    end: datetime
    window_x: int
    window_width: int
    marks: list[Mark]
    width: int


def timeline(window_start: datetime, window_end: datetime,
             marks: Sequence[tuple[str, datetime]]) -> Timeline:
    """The window as a band on an axis spanning it and every mark, with a margin."""
    times = [window_start, window_end, *(t for _, t in marks)]
    lo, hi = min(times), max(times)
    span = (hi - lo) or (window_end - window_start)
    margin = span * 0.05
    lo, hi = lo - margin, hi + margin
    total = (hi - lo).total_seconds() or 1.0

    def x(t: datetime) -> int:
        return round(TIMELINE_WIDTH * (t - lo).total_seconds() / total)

    return Timeline(
        start=lo, end=hi, window_x=x(window_start),
        window_width=max(2, x(window_end) - x(window_start)),
        marks=[Mark(label, t, x(t)) for label, t in sorted(marks, key=lambda m: m[1])],
        width=TIMELINE_WIDTH,
    )
