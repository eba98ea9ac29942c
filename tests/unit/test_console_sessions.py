"""Console sessions, the sign-in limit and inert text: pure functions of a clock and bytes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud_stub.console.charts import bar_chart, timeline
from cloud_stub.console.sessions import Admission, SessionStore, SignInLimiter
from cloud_stub.console.settings import ApprovalMode, approval_mode
from cloud_stub.console.text import inert
from cloud_stub.console.web import safe_next
from cloud_stub.store.engine import Store

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    """The service's store the sessions live in (SQLite in a temporary directory)."""
    made = Store.sqlite(tmp_path / "cloud.sqlite3")
    made.create_schema()
    yield made
    made.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_a_session_ends_after_idle_time_and_after_its_absolute_life(db: Store) -> None:
    clock = Clock()
    store = SessionStore(store=db, clock=clock, idle=timedelta(minutes=15),
                         absolute=timedelta(hours=1))
    session = store.open("p1")
    for _ in range(5):  # used every 14 minutes: alive until the absolute limit
        clock.now += timedelta(minutes=14)
        if clock.now - T0 <= timedelta(hours=1):
            assert store.get(session.id) is not None
    clock.now = T0 + timedelta(hours=1, seconds=1)
    assert store.get(session.id) is None
    idle = store.open("p1")
    clock.now += timedelta(minutes=15, seconds=1)
    assert store.get(idle.id) is None
    assert store.get(None) is None
    assert store.get("not-a-session") is None


def test_sign_out_and_closing_a_principal_end_sessions(db: Store) -> None:
    store = SessionStore(store=db, clock=Clock(), idle=timedelta(minutes=5),
                         absolute=timedelta(hours=1))
    a, b, other = store.open("p1"), store.open("p1"), store.open("p2")
    store.close(a.id)
    assert store.get(a.id) is None
    store.close_principal("p1")
    assert store.get(b.id) is None
    assert store.get(other.id) is not None


def test_csrf_compares_the_whole_token(db: Store) -> None:
    session = SessionStore(store=db, clock=Clock(), idle=timedelta(minutes=5),
                           absolute=timedelta(hours=1)).open()
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches(session.csrf[:-1])
    assert not session.csrf_matches("")
    assert not session.csrf_matches(None)


def test_sign_in_limit_per_client_and_window(db: Store) -> None:
    clock = Clock()
    limiter = SignInLimiter(store=db, clock=clock, attempts=3, per=timedelta(minutes=1))
    assert [limiter.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("10.0.0.2")
    clock.now += timedelta(minutes=1, seconds=1)
    assert limiter.allow("10.0.0.1")


def test_a_limited_client_is_reported_once_per_window(db: Store) -> None:
    clock = Clock()
    limiter = SignInLimiter(store=db, clock=clock, attempts=1, per=timedelta(minutes=1))
    assert [limiter.admit("c") for _ in range(3)] == [
        Admission.ALLOWED, Admission.REFUSED, Admission.REFUSED_AGAIN]
    clock.now += timedelta(minutes=2)
    assert [limiter.admit("c") for _ in range(2)] == [Admission.ALLOWED, Admission.REFUSED]


def test_sign_in_limit_over_all_clients(db: Store) -> None:
    limiter = SignInLimiter(store=db, clock=Clock(), attempts=2, per=timedelta(minutes=1))
    allowed = [limiter.allow(f"10.0.{i}.1") for i in range(21)]
    assert allowed.count(True) == 20
    assert allowed[-1] is False


def test_inert_shows_hidden_characters_and_cuts_long_text() -> None:
    assert inert("MPD-\u202e7811") == "MPD-[U+202E]7811"
    assert inert("a\u200bb\x07c") == "a[U+200B]b[U+0007]c"
    assert inert("line one\nline two") == "line one\nline two"
    assert inert("<script>") == "<script>"  # escaping is the template's job
    assert inert("x" * 30, limit=10) == "x" * 10 + " [... 20 more characters not shown]"
    assert inert(None) == ""


def test_bar_chart_and_timeline_geometry() -> None:
    chart = bar_chart("c", "title", {"warrant": 10, "emergency": 5, "none": 0})
    assert [b.label for b in chart.bars] == ["warrant", "emergency", "none"]
    assert chart.bars[0].width == 2 * chart.bars[1].width
    assert chart.bars[2].width == 2  # a zero still shows
    assert bar_chart("e", "empty", {}).bars == []
    line = timeline(T0, T0 + timedelta(hours=1), [("submitted", T0 + timedelta(hours=3))])
    assert 0 < line.window_x < line.marks[0].x < line.width
    assert line.window_width > 0


def test_after_sign_in_only_a_console_path() -> None:
    assert safe_next("/requests/0b1c-22") == "/requests/0b1c-22"
    assert safe_next("/queue") == "/queue"
    for hostile in ("//evil.example/x", "https://evil.example", "/\\evil.example",
                    "/sign-in", "/sign-out", "/a//b", "", None, "queue", "/a?b=c",
                    "/%2F%2Fevil", "/javascript:alert(1)"):
        assert safe_next(hostile) == "/", hostile


def test_the_approve_panel_follows_who_signs() -> None:
    assert approval_mode(reviewers_sign=False) is ApprovalMode.SERVICE
    assert approval_mode(reviewers_sign=True) is ApprovalMode.REVIEWER_COMMAND
