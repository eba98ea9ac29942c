"""Opening the store: SQLite (WAL) by default, PostgreSQL (psycopg 3) when given a URL.

`Store.transaction()` is the one way to touch the database: a session in a transaction
that commits on a clean exit and rolls back on any error, with SQLAlchemy's errors
translated to `StoreError`. On SQLite every transaction starts with ``BEGIN IMMEDIATE``
so that concurrent writers queue on the database lock instead of failing to upgrade a
read lock half way through; on PostgreSQL the rows that serialize work (sequence
counters, the audit head) are locked with ``SELECT ... FOR UPDATE``.

`Store.read()` is the same for a transaction that only reads (the checks on the
evidence upload path): on SQLite it starts with a deferred ``BEGIN``, which in WAL mode
reads a consistent snapshot without taking the write lock, so a device's upload is not
queued behind another request's commit and its sync; a write inside it is refused.
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

from cloud_stub.errors import ConfigError, StoreError

SQLITE_BUSY_TIMEOUT_MS = 30_000  # writers wait this long for the database lock
READ_ONLY = "doorbell_read_only"  # execution option of `Store.read()` sessions
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
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("PRAGMA query_only=ON")
        else:
            conn.exec_driver_sql("PRAGMA query_only=OFF")
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
        read_options: dict[str, Any] = {READ_ONLY: True}
        if backend == "postgresql":
            read_options["postgresql_readonly"] = True
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**read_options), expire_on_commit=False
        )

    @classmethod
    def sqlite(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(sqlite_url(path))

    def create_schema(self) -> None:
        """Create the schema in an empty store by running every revision (with the audit
        head row, so concurrent first appends lock it instead of racing to insert it);
        nothing when the store is current. Raises `StoreOutdated` for any other store,
        `StoreError` when the database fails (`cloud_stub.store.migrate`)."""
        from cloud_stub.store.migrate import create_schema

        create_schema(self)

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

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in a transaction that only reads; see the module's description.
        Raises `StoreError` when the database fails or something inside tries to write."""
        session = self._read_sessions()
        try:
            yield session
            if session.new or session.dirty or session.deleted:
                raise StoreError("a read-only store transaction was given changes to write")
        except SQLAlchemyError as exc:
            raise StoreError(f"store read failed: {exc.__class__.__name__}: {exc}") from exc
        finally:
            session.close()  # ends the transaction without writing anything

    def dispose(self) -> None:
        self.engine.dispose()
