"""Console sessions and the sign-in limit in the store on SQLite and the real PostgreSQL
(docs/adr/0015-review-console.md, sections 3 and 4): two `SessionStore`s or
`SignInLimiter`s over one store stand for two `serve` processes; only the sha256 of a
session id is kept, and the attempts of every process are counted together."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cloud_stub.console.sessions import Admission, SessionStore, SignInLimiter
from cloud_stub.store.engine import Store
from cloud_stub.store.models import ConsoleSessionRow, ConsoleSignInRow

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # each backend (tests/fixtures/postgres.py)
    s = Store(store_url)
    s.create_schema()
    yield s
    s.dispose()


def _rows(store: Store) -> list[ConsoleSessionRow]:
    with store.read() as session:
        return list(session.execute(select(ConsoleSessionRow)).scalars())


def test_two_processes_share_sessions_and_a_sign_out_ends_them_in_both(store: Store) -> None:
    clock = Clock()
    one, two = (SessionStore(store=store, clock=clock, idle=timedelta(minutes=15),
                             absolute=timedelta(hours=8)) for _ in range(2))
    opened = one.open("p1")
    [row] = _rows(store)
    assert row.id_sha256 == hashlib.sha256(opened.id.encode()).hexdigest()
    assert opened.id not in (row.id_sha256, row.csrf, row.principal_id)
    clock.now += timedelta(minutes=10)
    seen = two.get(opened.id)
    assert seen is not None
    assert (seen.principal_id, seen.csrf) == ("p1", opened.csrf)
    clock.now += timedelta(minutes=10)  # idle 10 min since `two` saw it: still live
    assert one.get(opened.id) is not None
    two.close(opened.id)
    assert one.get(opened.id) is None
    [row] = _rows(store)
    assert row.revoked_at == clock.now.replace(microsecond=0)
    one.open()  # opening a session deletes the rows that can never be used again
    assert [r.principal_id for r in _rows(store)] == [None]


def test_expired_rows_are_refused_and_a_disabled_key_ends_every_session(
    store: Store,
) -> None:
    clock = Clock()
    keep = SessionStore(store=store, clock=clock, idle=timedelta(minutes=15),
                        absolute=timedelta(hours=1))
    idle, other = keep.open("p1"), keep.open("p2")
    clock.now += timedelta(minutes=15, seconds=1)
    assert keep.get(idle.id) is None
    assert keep.get(other.id) is None
    a, b, c = keep.open("p1"), keep.open("p1"), keep.open("p3")
    for _ in range(4):  # used every 14 minutes until the absolute life ends
        clock.now += timedelta(minutes=14)
        assert keep.get(c.id) is not None
    clock.now += timedelta(minutes=5)
    assert keep.get(c.id) is None
    keep.close_principal("p1")
    assert keep.get(a.id) is None
    assert keep.get(b.id) is None


def test_the_table_is_capped(store: Store) -> None:
    clock = Clock()
    keep = SessionStore(store=store, clock=clock, idle=timedelta(minutes=15),
                        absolute=timedelta(hours=1), max_sessions=3)
    opened = []
    for _ in range(5):
        clock.now += timedelta(seconds=2)
        opened.append(keep.open())
    assert len(_rows(store)) == 3
    assert keep.get(opened[0].id) is None  # the least recently used went first
    assert keep.get(opened[-1].id) is not None


def test_two_processes_count_sign_in_attempts_together(store: Store) -> None:
    clock = Clock()
    one, two = (SignInLimiter(store=store, clock=clock, attempts=2, per=timedelta(minutes=1))
                for _ in range(2))
    assert [one.admit("10.0.0.1"), two.admit("10.0.0.1")] == [Admission.ALLOWED] * 2
    assert two.admit("10.0.0.1") is Admission.REFUSED
    assert one.admit("10.0.0.1") is Admission.REFUSED_AGAIN  # reported once, by either
    assert one.admit("10.0.0.2") is Admission.ALLOWED
    clock.now += timedelta(minutes=1, seconds=1)
    assert two.admit("10.0.0.1") is Admission.ALLOWED
    with store.read() as session:  # the window's rows only: the old ones went
        rows = list(session.execute(select(ConsoleSignInRow)).scalars())
    assert [(r.client, r.refused) for r in rows] == [("10.0.0.1", False)]


def test_simultaneous_attempts_in_two_processes_never_pass_the_limit(store_url: str) -> None:
    """Two engines (two connection pools, as two `serve` processes have) and eight
    threads racing: the count is serialized, so exactly `attempts` are allowed."""
    stores = [Store(store_url) for _ in range(2)]
    stores[0].create_schema()
    clock = Clock()
    limiters = [SignInLimiter(store=s, clock=clock, attempts=5, per=timedelta(minutes=1))
                for s in stores]
    results: list[Admission] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def attempt(limiter: SignInLimiter) -> None:
        start.wait()
        for _ in range(3):
            admission = limiter.admit("203.0.113.9")
            with lock:
                results.append(admission)

    threads = [threading.Thread(target=attempt, args=(limiters[i % 2],)) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for s in stores:
            s.dispose()
    assert len(results) == 24
    assert results.count(Admission.ALLOWED) == 5
    assert results.count(Admission.REFUSED) == 1
