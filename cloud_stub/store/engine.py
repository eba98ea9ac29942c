"""Opening the store: SQLite (WAL) by default, PostgreSQL (psycopg 3) when given a URL.

`Store.transaction()` is the one way to touch the database: a session in a transaction
that commits on a clean exit and rolls back on any error, with SQLAlchemy's errors
translated to `StoreError`. On SQLite every transaction starts with ``BEGIN IMMEDIATE``
so that concurrent writers queue on the database lock instead of failing to upgrade a
read lock half way through; on PostgreSQL the rows that serialize work (sequence
counters, the audit head) are locked with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloud_stub.audit import GENESIS_HASH
from cloud_stub.errors import ConfigError, StoreError
from cloud_stub.store.models import AuditLock, Base

SQLITE_BUSY_TIMEOUT_MS = 30_000  # writers wait this long for the database lock
AUDIT_LOCK_ID = 1  # the single row that serializes audit appends


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Autocommit at the driver level; SQLAlchemy's "begin" event issues BEGIN IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Store:
    """The database behind the service. Raises `ConfigError` for an unusable URL."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(f"store URL {url!r} is not a database URL: {exc}") from exc
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            self.engine = create_engine(
                parsed, connect_args={"check_same_thread": False, "timeout": 30}
            )
            _configure_sqlite(self.engine)
        elif backend == "postgresql":
            if parsed.drivername in ("postgresql", "postgres"):
                parsed = parsed.set(drivername="postgresql+psycopg")
            self.engine = create_engine(parsed, pool_pre_ping=True, pool_size=10)
        else:
            raise ConfigError(f"store URL {url!r}: only sqlite and postgresql are supported")
        self.backend = backend
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def sqlite(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(sqlite_url(path))

    def create_schema(self) -> None:
        """Create every table that does not exist yet. Raises `StoreError`."""
        try:
            Base.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot create the schema: {exc}") from exc
        # The audit head row exists before any append, so concurrent first appends lock
        # it instead of racing to insert it.
        with self.transaction() as session:
            if session.get(AuditLock, AUDIT_LOCK_ID) is None:
                session.add(AuditLock(id=AUDIT_LOCK_ID, head_seq=0, head_hash=GENESIS_HASH))

    @property
    def locks_rows(self) -> bool:
        """Whether ``SELECT ... FOR UPDATE`` is needed (SQLite serializes whole transactions)."""
        return self.backend == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction. Raises `StoreError` when the database fails."""
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"store operation failed: {exc.__class__.__name__}: {exc}") from exc
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
