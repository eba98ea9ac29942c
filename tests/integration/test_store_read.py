"""`Store.read()` on SQLite and on a real PostgreSQL: a transaction that only reads.

Proves what the evidence upload path relies on: a write inside `Store.read()` is refused
with `StoreError` and changes nothing; a read completes while another thread holds a
write transaction open (the positive control: a second writer in the same situation
waits for the first), and sees the state before that writer's uncommitted change; and
the read-only setting does not stay on the pooled connection, so the next
`Store.transaction()` on the very same connection writes normally.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from cloud_stub.errors import StoreError
from cloud_stub.store import Store
from cloud_stub.store.engine import AUDIT_LOCK_ID
from cloud_stub.store.models import AuditLock, Principal
from cloud_stub.store.principals import create_principal

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
HANG_GUARD_S = 30.0  # only so that a deadlock fails the test instead of hanging it
BLOCKED_PROBE_S = 0.5  # how long the positive control waits to see a writer blocked


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_store_url")
    s = Store(url)
    s.create_schema()
    yield s
    s.dispose()


def read_only_flag(store: Store, session: Session) -> bool:
    """Whether the database itself holds this session's transaction read-only."""
    if store.backend == "sqlite":
        return bool(session.execute(text("PRAGMA query_only")).scalar_one())
    return bool(session.execute(text("SHOW transaction_read_only")).scalar_one() == "on")


def _orm_insert(session: Session) -> None:
    create_principal(session, name="sneaky", role="agency", org="sneaky", now=NOW)
    session.flush()


def _core_update(session: Session) -> None:
    session.execute(update(AuditLock).where(AuditLock.id == AUDIT_LOCK_ID)
                    .values(head_seq=AuditLock.head_seq + 5))


def _orm_change(session: Session) -> None:
    row = session.get(AuditLock, AUDIT_LOCK_ID)
    assert row is not None
    row.head_seq = 99
    session.flush()


def _orm_change_unflushed(session: Session) -> None:
    row = session.get(AuditLock, AUDIT_LOCK_ID)
    assert row is not None
    row.head_seq = 42  # nothing flushes it: the read must refuse it, not drop it


def _orm_insert_unflushed(session: Session) -> None:
    create_principal(session, name="unflushed", role="agency", org="unflushed", now=NOW)


def _core_insert(session: Session) -> None:
    session.execute(insert(AuditLock).values(id=2, head_seq=0, head_hash="0" * 64))


def state(store: Store) -> tuple[int, list[str], bool]:
    """The audit head's seq, the principals' names, whether a second lock row exists."""
    with store.transaction() as session:
        row = session.get(AuditLock, AUDIT_LOCK_ID)
        assert row is not None
        names = sorted(session.execute(select(Principal.name)).scalars())
        return row.head_seq, names, session.get(AuditLock, 2) is not None


# each write, and the state it leaves when it is allowed to land on a fresh store
WRITES: dict[str, tuple[Callable[[Session], None], tuple[int, list[str], bool]]] = {
    "orm-insert": (_orm_insert, (0, ["sneaky"], False)),
    "core-update": (_core_update, (5, [], False)),
    "orm-change": (_orm_change, (99, [], False)),
    "core-insert": (_core_insert, (0, [], True)),
    "orm-change-unflushed": (_orm_change_unflushed, (42, [], False)),
    "orm-insert-unflushed": (_orm_insert_unflushed, (0, ["unflushed"], False)),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_write_inside_a_read_is_refused_and_changes_nothing(store: Store, write: str) -> None:
    do, landed = WRITES[write]
    assert state(store) == (0, [], False)

    def write_in_a_read() -> None:
        with store.read() as session:
            do(session)

    with pytest.raises(StoreError):
        write_in_a_read()
    assert state(store) == (0, [], False)
    # positive control: the same write in a transaction is allowed and lands
    with store.transaction() as session:
        assert not read_only_flag(store, session)
        do(session)
    assert state(store) == landed


def _dbapi_connection(session: Session) -> Any:
    return session.connection().connection.dbapi_connection


def test_after_a_read_the_same_connection_writes_again(store: Store) -> None:
    """The read-only setting is reset when the pooled connection is next used to write
    (the test checks that it is indeed the same connection)."""
    with store.read() as session:
        reader = _dbapi_connection(session)
        assert read_only_flag(store, session)
        assert session.get(AuditLock, AUDIT_LOCK_ID) is not None
    with store.transaction() as session:
        assert _dbapi_connection(session) is reader
        assert not read_only_flag(store, session)
        create_principal(session, name="after-read", role="agency", org="after-read", now=NOW)
        row = session.get(AuditLock, AUDIT_LOCK_ID)
        assert row is not None
        row.head_seq = 7
    assert state(store) == (7, ["after-read"], False)
    # and the other way round: a read after a write is read-only again
    with store.read() as session:
        assert _dbapi_connection(session) is reader
        assert read_only_flag(store, session)


class HeldWriter:
    """A thread inside `store.transaction()` that has changed the audit head row and stays
    there, uncommitted, until released."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.inside = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="held-writer", daemon=True)

    def _run(self) -> None:
        try:
            with self.store.transaction() as session:
                row = session.get(AuditLock, AUDIT_LOCK_ID)
                assert row is not None
                row.head_seq = 1000
                session.flush()  # the change is in the database, not yet committed
                self.inside.set()
                if not self.release.wait(HANG_GUARD_S):
                    raise AssertionError("the held writer was never released")
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.inside.set()

    def __enter__(self) -> HeldWriter:
        self.thread.start()
        assert self.inside.wait(HANG_GUARD_S)
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(HANG_GUARD_S)
        assert not self.thread.is_alive()


def test_a_read_completes_while_a_writer_holds_its_transaction(store: Store) -> None:
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            with store.read() as session:
                row = session.get(AuditLock, AUDIT_LOCK_ID)
                assert row is not None
                seen.append(row.head_seq)
        except BaseException as exc:
            errors.append(exc)

    with HeldWriter(store) as writer:
        thread = threading.Thread(target=reader, name="reader", daemon=True)
        thread.start()
        thread.join(HANG_GUARD_S)
        assert not thread.is_alive(), "the read waited for the writer's transaction"
        # it finished while the writer was still inside its transaction
        assert not writer.release.is_set()
        assert writer.thread.is_alive()
        assert errors == []
        assert seen == [0]  # the state before the writer's uncommitted change
    assert writer.error is None
    assert state(store)[0] == 1000


def test_positive_control_a_second_writer_waits_for_the_held_one(store: Store) -> None:
    """The situation above does block a writer: the read's not waiting is not an accident
    of the test (SQLite: BEGIN IMMEDIATE; PostgreSQL: the same row)."""
    done = threading.Event()
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with store.transaction() as session:
                # FOR UPDATE: PostgreSQL waits on the held row; SQLite already waited
                # for BEGIN IMMEDIATE
                row = session.execute(select(AuditLock).where(AuditLock.id == AUDIT_LOCK_ID)
                                      .with_for_update()).scalar_one()
                row.head_seq += 1
            done.set()
        except BaseException as exc:
            errors.append(exc)

    with HeldWriter(store) as writer:
        thread = threading.Thread(target=second_writer, name="second-writer", daemon=True)
        thread.start()
        thread.join(BLOCKED_PROBE_S)
        assert thread.is_alive(), f"the second writer did not wait: {errors!r}"
        assert not done.is_set()
        assert writer.thread.is_alive()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive()
    assert errors == []
    assert writer.error is None
    assert state(store)[0] == 1001  # it ran after the held writer's commit, on its value
