"""The store's revision, and `cloud-stub store upgrade`: Alembic, run by the cloud stub.

The revisions live in the package (`cloud_stub/store/migrations/versions/`, ADR 0016);
the first, ``0001``, is the schema the last release before migrations made (fec2406).
What a store holds is one of `StoreState`:

- `NEW`: none of the cloud stub's tables and no ``alembic_version``: an empty database.
  `create_schema` runs every revision (the service does this at its first start).
- `BEFORE_MIGRATIONS`: the previous release's tables and no ``alembic_version``.
  `upgrade` stamps it at the baseline, then applies what follows.
- `BEHIND`: a revision this version knows, not the head: `upgrade` applies the rest.
- `CURRENT`: at the head.
- `UNKNOWN`: a revision this version does not know (written by a newer cloud stub).

`upgrade` does all of it in one transaction with a ``store.upgraded`` audit entry, and
before committing compares the tables with the models (`schema.inspect_schema`): a store
that does not match (older than the baseline, or changed by hand) is rolled back and
refused, naming each difference. PostgreSQL and SQLite both roll DDL back.
"""

from __future__ import annotations

import datetime as dt
import enum
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from cloud_stub.errors import ConfigError
from cloud_stub.store.audit_log import AuditTrail
from cloud_stub.store.engine import Store
from cloud_stub.store.models import Base

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema of the last release before migrations (fec2406)
VERSION_TABLE = "alembic_version"
UPGRADE_COMMAND = "cloud-stub store upgrade"
_LOCK_KEY = 0x5D00_0016  # pg_advisory_xact_lock key of schema changes


class StoreOutdated(ConfigError):
    """The store is not at this version's revision, or its tables do not match it."""

    code = "store_outdated"


class StoreState(enum.Enum):
    NEW = "new"
    BEFORE_MIGRATIONS = "before_migrations"
    BEHIND = "behind"
    CURRENT = "current"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Revision:
    id: str
    message: str  # the first line of the revision's docstring

    def __str__(self) -> str:
        return f"{self.id} ({self.message})"


@dataclass(frozen=True, slots=True)
class StoreRevision:
    """Where a store stands: its revision (None before migrations), the head, and the
    revisions `upgrade` would apply, oldest first."""

    state: StoreState
    current: str | None
    head: str
    pending: tuple[Revision, ...]

    def describe(self) -> str:
        if self.state is StoreState.NEW:
            return "an empty database"
        if self.state is StoreState.BEFORE_MIGRATIONS:
            return "made before the cloud stub kept migrations (no alembic_version table)"
        return f"at revision {self.current}"


def alembic_config(*, output: io.StringIO | None = None) -> Config:
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    if head is None:  # the baseline is always there
        raise ConfigError(f"no store revisions found under {MIGRATIONS}")
    return head


def _revisions_after(current: str | None) -> tuple[Revision, ...]:
    """Revisions from `current` (exclusive; None: from nothing) to the head, oldest first."""
    scripts = _scripts()
    walked = list(scripts.walk_revisions(base="base", head="heads"))
    out: list[Revision] = []
    for script in reversed(walked):  # walk_revisions goes head first
        out.append(Revision(script.revision, (script.doc or "").splitlines()[0].rstrip(".")))
    if current is None:
        return tuple(out)
    ids = [r.id for r in out]
    return tuple(out[ids.index(current) + 1 :])


def _state_of(connection: Connection) -> StoreRevision:
    head = head_revision()
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE not in tables:
        ours = {t.name for t in Base.metadata.sorted_tables}
        if not tables & ours:
            return StoreRevision(StoreState.NEW, None, head, _revisions_after(None))
        return StoreRevision(StoreState.BEFORE_MIGRATIONS, None, head,
                             _revisions_after(BASELINE))
    heads = MigrationContext.configure(connection).get_current_heads()
    current = heads[0] if len(heads) == 1 else None
    known = {r.id for r in _revisions_after(None)}
    if current is None or current not in known:
        shown = ", ".join(heads) or "none"
        return StoreRevision(StoreState.UNKNOWN, shown, head, ())
    if current == head:
        return StoreRevision(StoreState.CURRENT, current, head, ())
    return StoreRevision(StoreState.BEHIND, current, head, _revisions_after(current))


def read_revision(store: Store) -> StoreRevision:
    """Where `store` stands. Raises `StoreError` when the database cannot be read."""
    with store.read() as session:
        return _state_of(session.connection())


def _run(connection: Connection, state: StoreRevision) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if state.state is StoreState.BEFORE_MIGRATIONS:
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")


_CHANGED_BY_HAND = "its tables were changed by hand or restored from another backup"
_OLDER = ("it is older than the previous release, or its tables were changed by hand "
          "(add a missing nullable column by hand, then upgrade again)")


def _refuse_mismatch(connection: Connection, store: Store, what: str, why: str) -> None:
    from cloud_stub.store.schema import inspect_schema, redacted_url

    report = inspect_schema(connection)
    if not report.current:
        raise StoreOutdated(
            f"the store ({redacted_url(store)}) {what}, but its tables do not match this "
            f"version of the cloud stub: {'; '.join(report.problems())}. Nothing was "
            f"changed; {why}: restore the right backup, or repair the named tables"
        )


def _serialize(connection: Connection) -> None:
    """On PostgreSQL, one schema change at a time (SQLite's BEGIN IMMEDIATE already is)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def create_schema(store: Store) -> None:
    """Bring an empty store to the head by running every revision (no audit entry: there
    is no history yet). Raises `StoreOutdated` for a store that is not empty and not
    current, `StoreError` when the database fails."""
    with store.transaction() as session:
        connection = session.connection()
        _serialize(connection)
        state = _state_of(connection)
        if state.state is StoreState.CURRENT:
            return
        if state.state is not StoreState.NEW:
            raise StoreOutdated(f"the store is {state.describe()}, not empty: run "
                                f"`{UPGRADE_COMMAND}`")
        _run(connection, state)
        _refuse_mismatch(connection, store, "was created from the revisions",
                         "a revision does not match the models")


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    before: StoreRevision
    audit_seq: int | None  # the store.upgraded entry; None when nothing was to do


def upgrade(store: Store, *, actor: str, at: dt.datetime) -> UpgradeResult:
    """Bring `store` to the head: create a new one, stamp one made before migrations,
    apply the revisions a known one lacks; then check its tables against the models and
    append a ``store.upgraded`` audit entry, all in one transaction.

    Raises `StoreOutdated` (nothing changed) for a revision this version does not know or
    tables that do not match after the revisions; `StoreError` when the database fails.
    """
    with store.transaction() as session:
        connection = session.connection()
        _serialize(connection)
        state = _state_of(connection)
        if state.state is StoreState.UNKNOWN:
            raise StoreOutdated(unknown_revision(store, state))
        if state.state is StoreState.CURRENT:
            _refuse_mismatch(connection, store, f"is at revision {state.current}",
                             _CHANGED_BY_HAND)
            return UpgradeResult(state, None)
        _run(connection, state)
        _refuse_mismatch(connection, store, f"was brought to revision {state.head}",
                         _OLDER if state.state is StoreState.BEFORE_MIGRATIONS
                         else _CHANGED_BY_HAND)
        entry = AuditTrail(store).append(
            session, at=at, actor=actor, action="store.upgraded", subject="store",
            detail={"from": state.current if state.current is not None else state.state.value,
                    "to": state.head,
                    "revisions": [r.id for r in state.pending],
                    "stamped": BASELINE if state.state is StoreState.BEFORE_MIGRATIONS
                    else None},
        )
    return UpgradeResult(state, entry.seq)


def upgrade_sql(store: Store, state: StoreRevision) -> str:
    """The SQL `upgrade` would run on `store` from `state` (Alembic's offline mode)."""
    output = io.StringIO()
    config = alembic_config(output=output)
    config.attributes["dialect_name"] = store.engine.dialect.name
    try:
        if state.state is StoreState.BEFORE_MIGRATIONS:
            command.stamp(config, BASELINE, sql=True)
            if state.pending:
                command.upgrade(config, f"{BASELINE}:head", sql=True)
        elif state.state is StoreState.NEW:
            command.upgrade(config, "head", sql=True)
        elif state.state is StoreState.BEHIND:
            command.upgrade(config, f"{state.current}:head", sql=True)
    except Exception as exc:  # a revision that reads rows may not run offline
        output.write(f"\n-- the rest cannot be shown without the rows: "
                     f"{exc.__class__.__name__}: {exc}\n")
    return output.getvalue()


def unknown_revision(store: Store, state: StoreRevision) -> str:
    from cloud_stub.store.schema import redacted_url

    return (f"the store ({redacted_url(store)}) is at revision {state.current}, which this "
            f"version of the cloud stub (head {state.head}) does not know: it was upgraded "
            "by a newer version. Nothing was changed; run that version, or restore a "
            "backup made before the upgrade")


def refuse_unless_current(store: Store, state: StoreRevision, *, upgrade_hint: str) -> None:
    """Raise `StoreOutdated` naming the fix unless `state` is `CURRENT` (or `NEW`)."""
    from cloud_stub.store.schema import redacted_url

    where = redacted_url(store)
    if state.state is StoreState.UNKNOWN:
        raise StoreOutdated(unknown_revision(store, state))
    if state.state is StoreState.BEFORE_MIGRATIONS:
        then = "".join(f", then apply {r}" for r in state.pending)
        raise StoreOutdated(
            f"the store ({where}) was made before the cloud stub kept migrations (it has no "
            f"alembic_version table); this version needs it at revision {state.head}. "
            f"Nothing was changed; run `{upgrade_hint}` (it stamps the store at revision "
            f"{BASELINE}, the previous release's tables{then}), then start again"
        )
    if state.state is StoreState.BEHIND:
        pending = ", ".join(str(r) for r in state.pending)
        raise StoreOutdated(
            f"the store ({where}) is at revision {state.current}; this version of the cloud "
            f"stub needs revision {state.head} (to apply: {pending}). Nothing was changed; "
            f"run `{upgrade_hint}`, then start again"
        )
