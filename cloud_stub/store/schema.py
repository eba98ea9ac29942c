"""The live store against the models: a check before service, and `cloud-stub store upgrade`.

The store has no migration history (ADR 0008). What the code expects is the models'
metadata (`cloud_stub.store.models.Base`); what the database holds is read back with
SQLAlchemy's inspector. `inspect_schema` compares the two table by table and column by
column:

- a table or column the models have and the database lacks is *missing*: the service
  would fail on first use with a raw SQL error, so `prepare_store` refuses to start with
  one error naming each of them and the command that adds them;
- a column whose type compiles differently in the database's dialect is *changed*: also
  refused, and `store upgrade` will not touch it (a type change can lose data);
- a table or column the database has and the models lack is *extra*: logged as a
  warning and left alone (an operator's own table, or a column a newer version added).

`plan_upgrade` turns a report into the steps `store upgrade` can take safely: create a
missing table (with its indexes and constraints) and add a missing column that is
nullable, not part of a key, not unique and not a foreign key, by ``ALTER TABLE ... ADD
COLUMN`` compiled for the store's dialect. Anything else is a refusal naming the table
and column, and a plan with any refusal changes nothing. `apply_upgrade` runs every step
and the audit entry in one transaction: PostgreSQL and SQLite both roll DDL back.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Engine, Table, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateColumn

from cloud_stub.errors import ConfigError, StoreError
from cloud_stub.store.audit_log import AuditTrail
from cloud_stub.store.engine import Store
from cloud_stub.store.models import Base

log = logging.getLogger(__name__)

UPGRADE_COMMAND = "cloud-stub store upgrade"


class StoreOutdated(ConfigError):
    """The store lacks tables or columns this version of the cloud stub uses, or holds a
    column of another type."""

    code = "store_outdated"


@dataclass(frozen=True, slots=True)
class TypeChange:
    table: str
    column: str
    found: str
    expected: str


@dataclass(frozen=True, slots=True)
class SchemaReport:
    """How the live database differs from the models. Names are ``table`` or
    ``table.column``."""

    missing_tables: tuple[str, ...]
    missing_columns: tuple[str, ...]
    changed_types: tuple[TypeChange, ...]
    extra_tables: tuple[str, ...]
    extra_columns: tuple[str, ...]
    new: bool  # not one of the models' tables exists: an empty store

    @property
    def current(self) -> bool:
        """Nothing missing and no type changed (extras are allowed)."""
        return not (self.missing_tables or self.missing_columns or self.changed_types)

    def problems(self) -> list[str]:
        """One line per thing that stops the service, in the models' order."""
        return (
            [f"table {t} is missing" for t in self.missing_tables]
            + [f"column {c} is missing" for c in self.missing_columns]
            + [f"column {c.table}.{c.column} is {c.found}, expected {c.expected}"
               for c in self.changed_types]
        )

    def warnings(self) -> list[str]:
        return (
            [f"table {t} is not one of the cloud stub's (left alone)" for t in self.extra_tables]
            + [f"column {c} is not one of the cloud stub's (left alone)"
               for c in self.extra_columns]
        )


def _type_name(type_: object, engine: Engine) -> str:
    compile_ = getattr(type_, "compile", None)
    if compile_ is None:
        return str(type_).upper()
    try:
        return " ".join(str(compile_(dialect=engine.dialect)).upper().split())
    except SQLAlchemyError:
        return str(type_).upper()


def inspect_schema(engine: Engine) -> SchemaReport:
    """Compare the database behind `engine` with the models. Raises `StoreError` when the
    database cannot be read."""
    try:  # every table's columns at once: one catalog query on PostgreSQL, not one a table
        live_columns = {
            name: {c["name"]: c for c in columns}
            for (_schema, name), columns in inspect(engine).get_multi_columns().items()
        }
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the store's schema: {exc.__class__.__name__}: {exc}"
                         ) from exc
    live_tables = set(live_columns)
    tables = Base.metadata.sorted_tables
    missing_tables: list[str] = []
    missing_columns: list[str] = []
    changed: list[TypeChange] = []
    extra_columns: list[str] = []
    for table in tables:
        if table.name not in live_tables:
            missing_tables.append(table.name)
            continue
        found = live_columns[table.name]
        for column in table.columns:
            info = found.get(column.name)
            if info is None:
                missing_columns.append(f"{table.name}.{column.name}")
                continue
            expected = _type_name(column.type, engine)
            actual = _type_name(info["type"], engine)
            if actual != expected:
                changed.append(TypeChange(table.name, column.name, actual, expected))
        extra_columns += [f"{table.name}.{name}" for name in found
                          if name not in table.columns]
    known = {t.name for t in tables}
    return SchemaReport(
        missing_tables=tuple(missing_tables),
        missing_columns=tuple(missing_columns),
        changed_types=tuple(changed),
        extra_tables=tuple(sorted(live_tables - known)),
        extra_columns=tuple(extra_columns),
        new=not (live_tables & known),
    )


def prepare_store(store: Store, *, upgrade_hint: str = UPGRADE_COMMAND) -> SchemaReport:
    """Make `store` ready for the service: create the schema in an empty store, accept a
    current one (warning about extras), refuse an old one.

    Raises `StoreOutdated` with one message naming every missing table and column and
    every changed type, and `upgrade_hint`, the command that fixes what it can; raises
    `StoreError` when the database cannot be read or written.
    """
    report = inspect_schema(store.engine)
    if not report.new and not report.current:
        lines = "; ".join(report.problems())
        fix = (f"run `{upgrade_hint}` to add them" if not report.changed_types else
               f"`{upgrade_hint}` adds missing tables and nullable columns but never "
               "changes a column's type: migrate that column by hand")
        raise StoreOutdated(
            f"the store ({redacted_url(store)}) does not match this version of the cloud "
            f"stub: {lines}. Nothing was changed; {fix}, then start again"
        )
    for warning in report.warnings():
        log.warning("store %s: %s", redacted_url(store), warning)
    store.create_schema()  # every table exists already unless the store is new
    return report


def redacted_url(store: Store) -> str:
    """The store's URL without its password, for messages."""
    return store.engine.url.render_as_string(hide_password=True)


@dataclass(frozen=True, slots=True)
class UpgradePlan:
    """What `store upgrade` would do (`steps`, human-readable) and what it refuses."""

    report: SchemaReport
    tables: tuple[Table, ...]
    columns: tuple[Column[Any], ...]
    steps: tuple[str, ...]
    refusals: tuple[str, ...]

    @property
    def nothing_to_do(self) -> bool:
        return not self.steps and not self.refusals


def _unsafe(column: Column[Any]) -> str | None:
    """Why `column` cannot be added to an existing table safely, or None."""
    if column.primary_key:
        return "it is part of the primary key"
    if not column.nullable and column.server_default is None:
        return ("it is NOT NULL without a server default, so the rows already there "
                "would have no value")
    if column.unique:
        return "it is unique (SQLite cannot add a unique column)"
    if column.foreign_keys:
        return "it is a foreign key (its constraint cannot be added by ADD COLUMN everywhere)"
    return None


def plan_upgrade(store: Store) -> UpgradePlan:
    """The steps that bring `store` to the models. Raises `StoreError` (database unreadable)."""
    report = inspect_schema(store.engine)
    tables: list[Table] = []
    columns: list[Column[Any]] = []
    steps: list[str] = []
    refusals: list[str] = []
    metadata = Base.metadata.tables
    for name in report.missing_tables:
        tables.append(metadata[name])
        steps.append(f"create table {name}")
    for ref in report.missing_columns:
        table_name, column_name = ref.split(".", 1)
        column = metadata[table_name].columns[column_name]
        why = _unsafe(column)
        if why is not None:
            refusals.append(f"column {ref} cannot be added: {why}")
            continue
        columns.append(column)
        steps.append(f"add column {ref} ({_type_name(column.type, store.engine)}, nullable)")
    for change in report.changed_types:
        refusals.append(f"column {change.table}.{change.column} is {change.found}, expected "
                        f"{change.expected}: a type is never changed here (data could be "
                        "lost); migrate it by hand")
    return UpgradePlan(report=report, tables=tuple(tables), columns=tuple(columns),
                       steps=tuple(steps), refusals=tuple(refusals))


def _add_column_sql(column: Column[Any], store: Store) -> str:
    dialect = store.engine.dialect
    table = dialect.identifier_preparer.format_table(column.table)
    spec = str(CreateColumn(column).compile(dialect=dialect)).strip()
    return f"ALTER TABLE {table} ADD COLUMN {spec}"


def apply_upgrade(store: Store, plan: UpgradePlan, *, actor: str, at: dt.datetime) -> int:
    """Run `plan` and append a ``store.upgraded`` audit entry in one transaction; return
    the entry's seq. Refuses a plan with refusals or without steps (`StoreOutdated`).
    Raises `StoreError` when the database fails (nothing is changed then)."""
    if plan.refusals:
        raise StoreOutdated("; ".join(plan.refusals))
    if not plan.steps:
        raise StoreOutdated("the store is current: nothing to upgrade")
    with store.transaction() as session:
        connection = session.connection()
        for table in plan.tables:
            table.create(connection)
        for column in plan.columns:
            connection.execute(text(_add_column_sql(column, store)))
        entry = AuditTrail(store).append(
            session, at=at, actor=actor, action="store.upgraded", subject="store",
            detail={"created_tables": [t.name for t in plan.tables],
                    "added_columns": [f"{c.table.name}.{c.name}" for c in plan.columns]},
        )
    return entry.seq
