"""The live store against the models, and the check before service (`prepare_store`).

Which revision a store is at is Alembic's (`cloud_stub.store.migrate`, ADR 0016). What
the code expects is the models' metadata (`cloud_stub.store.models.Base`); what the
database holds is read back with SQLAlchemy's inspector. `inspect_schema` compares the
two table by table and column by column, so a store at the right revision whose tables
were changed by hand (or restored from another backup) is caught too:

- a table or column the models have and the database lacks is *missing*, and a column
  whose type compiles differently in the database's dialect is *changed*: the service
  would fail on first use with a raw SQL error, so `prepare_store` refuses to start with
  one error naming each of them;
- a table or column the database has and the models lack is *extra*: logged as a
  warning and left alone (an operator's own table).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from cloud_stub.errors import StoreError
from cloud_stub.store.engine import Store
from cloud_stub.store.migrate import (
    UPGRADE_COMMAND,
    VERSION_TABLE,
    StoreOutdated,
    StoreState,
    create_schema,
    read_revision,
    refuse_unless_current,
)
from cloud_stub.store.models import Base

log = logging.getLogger(__name__)


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


def _type_name(type_: object, bind: Engine | Connection) -> str:
    compile_ = getattr(type_, "compile", None)
    if compile_ is None:
        return str(type_).upper()
    try:
        return " ".join(str(compile_(dialect=bind.dialect)).upper().split())
    except SQLAlchemyError:
        return str(type_).upper()


def inspect_schema(bind: Engine | Connection) -> SchemaReport:
    """Compare the database behind `bind` with the models. Raises `StoreError` when the
    database cannot be read."""
    try:  # every table's columns at once: one catalog query on PostgreSQL, not one a table
        live_columns = {
            name: {c["name"]: c for c in columns}
            for (_schema, name), columns in inspect(bind).get_multi_columns().items()
        }
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the store's schema: {exc.__class__.__name__}: {exc}"
                         ) from exc
    live_tables = set(live_columns) - {VERSION_TABLE}
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
            expected = _type_name(column.type, bind)
            actual = _type_name(info["type"], bind)
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
    )


def prepare_store(store: Store, *, upgrade_hint: str = UPGRADE_COMMAND) -> SchemaReport:
    """Make `store` ready for the service: create the schema in an empty store (every
    revision), accept one at the head whose tables match the models (warning about
    extras), refuse any other.

    Raises `StoreOutdated` naming the store's revision and `upgrade_hint`, the command
    that fixes it, or every missing table and column and changed type of a store at the
    head; raises `StoreError` when the database cannot be read or written.
    """
    state = read_revision(store)
    if state.state is StoreState.NEW:
        create_schema(store)
    refuse_unless_current(store, state, upgrade_hint=upgrade_hint)
    report = inspect_schema(store.engine)
    if not report.current:
        raise StoreOutdated(
            f"the store ({redacted_url(store)}) is at revision {state.head}, this version's, "
            f"but does not match its tables: {'; '.join(report.problems())}. Nothing was "
            "changed; it was changed by hand or restored from another backup: restore the "
            "right backup, or repair the named tables by hand, then start again"
        )
    for warning in report.warnings():
        log.warning("store %s: %s", redacted_url(store), warning)
    return report


def redacted_url(store: Store) -> str:
    """The store's URL without its password, for messages."""
    return store.engine.url.render_as_string(hide_password=True)
