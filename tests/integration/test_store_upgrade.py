"""The store's revisions (Alembic, ADR 0016) on real SQLite files and a real PostgreSQL.

The old store is the real thing: the previous release's DDL (commit fec2406, before
migrations; `tests/fixtures/store_fec2406/`) holding data in every table and a verified
audit chain (`tests/fixtures/previous_store.py`). The service is started the ways an
operator starts it: `cloud-stub serve` and another command through the CLI's `main`,
and `CloudService.open` as the tests' cloud does. Each refusal stands beside the
positive control of a current store passing the same check.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from cloud_stub.errors import StoreError
from cloud_stub.services.cloud_service import CloudService
from cloud_stub.store import Store, migrate
from cloud_stub.store.audit_log import AuditTrail
from cloud_stub.store.migrate import (
    BASELINE,
    VERSION_TABLE,
    StoreOutdated,
    StoreState,
    head_revision,
    read_revision,
)
from cloud_stub.store.models import AuditRow, Base
from cloud_stub.store.schema import inspect_schema
from tests.fixtures.deployment import OperatorCli, TestDeployment
from tests.fixtures.previous_store import (
    PENDING,
    REFUSED,
    RELEASED,
    make_previous_release_store,
    snapshot,
)

AUDIT_TABLES = ("audit_entries", "audit_lock")


class Operator(OperatorCli):
    """The `cloud-stub` command line, the service and the raw store of one deployment."""

    def open(self) -> CloudService:
        return CloudService.open(self.deployment.layout.root, store_url=self.store_url)

    def store(self) -> Store:
        return Store(self.store_url)

    def sql(self, *statements: str) -> None:
        """Change the store behind the service's back."""
        store = self.store()
        try:
            with store.engine.begin() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            store.dispose()

    def audit_actions(self) -> list[str]:
        store = self.store()
        try:
            with store.transaction() as session:
                return list(session.execute(
                    select(AuditRow.action).order_by(AuditRow.seq)).scalars())
        finally:
            store.dispose()

    def state(self) -> StoreState:
        store = self.store()
        try:
            return read_revision(store).state
        finally:
            store.dispose()

    def tables(self) -> set[str]:
        store = self.store()
        try:
            return set(inspect(store.engine).get_table_names())
        finally:
            store.dispose()

    def refused(self, *needles: str) -> None:
        """`serve` and another command refuse to start, naming `needles` and the fix."""
        for argv in (("serve", "--no-mqtt"), ("devices", "list")):
            code, out, err = self.run(*argv)
            assert code == 1, out
            for needle in needles:
                assert needle in err
            assert "[store_outdated]" in err
            assert "Traceback" not in err


@pytest.fixture
def operator(fresh_deployment: TestDeployment, store_url: str,
             capsys: pytest.CaptureFixture[str]) -> Operator:
    fresh_deployment.enroll_device(fresh_deployment.new_device_id("porch"))
    fresh_deployment.move_keys_off_host()  # `serve` refuses to start beside them (ADR 0013)
    return Operator(fresh_deployment, store_url, capsys)


def test_a_previous_release_store_is_refused_then_upgraded_and_loses_nothing(
    operator: Operator,
) -> None:
    """A store made by the release before migrations, holding data: `serve` and the CLI
    refuse it naming the fix; `--dry-run` prints the stamp and its SQL and changes
    nothing; `upgrade` stamps it at the baseline with one audit entry; every row of every
    table is as it was, the audit chain verifies, and the service reads the data."""
    op = operator
    entries = make_previous_release_store(op.store_url)
    before = snapshot(op.store_url)
    assert all(before[name] for name in before), "every table holds data"
    assert op.state() is StoreState.BEFORE_MIGRATIONS

    op.refused("made before the cloud stub kept migrations",
               f"stamps the store at revision {BASELINE}",
               "cloud-stub store upgrade --deployment")
    with pytest.raises(StoreOutdated, match="no alembic_version table"):
        op.open()

    code, out, err = op.run("store", "upgrade", "--dry-run")
    assert code == 0, err
    assert f"stamp revision {BASELINE}" in out
    assert "INSERT INTO alembic_version" in out
    assert "dry run: nothing was changed." in out
    assert VERSION_TABLE not in op.tables()
    assert snapshot(op.store_url) == before

    code, out, err = op.run("store", "upgrade")
    assert code == 0, err
    assert f"store upgraded to revision {head_revision()}" in out
    assert op.state() is StoreState.CURRENT

    after = snapshot(op.store_url)
    for name in before:
        if name not in AUDIT_TABLES:
            assert after[name] == before[name], name
    assert after["audit_entries"][:entries] == before["audit_entries"]
    assert len(after["audit_entries"]) == entries + 1
    assert op.audit_actions()[-1] == "store.upgraded"

    code, out, err = op.run("audit", "verify")
    assert code == 0, err
    assert f"audit chain intact: {entries + 1} entries" in out
    code, out, err = op.run("requests", "list")
    assert code == 0, err
    for request_id in (RELEASED, PENDING, REFUSED):
        assert request_id in out
    code, out, err = op.run("requests", "show", RELEASED)
    assert code == 0, err
    assert "Warrant verified with the clerk." in out

    code, out, err = op.run("store", "upgrade")  # the second run: nothing to do
    assert code == 0, err
    assert "current: nothing to do" in out
    assert len(op.audit_actions()) == entries + 1


def test_a_new_store_is_created_by_the_revisions_and_matches_the_models(
    operator: Operator,
) -> None:
    """The positive control for every refusal: the service creates an empty store by
    running the revisions; the result is at the head and matches the models exactly
    (tables, columns, types, indexes, constraints: Alembic's own comparison), and
    `store upgrade` has nothing to do."""
    op = operator
    assert op.state() is StoreState.NEW
    op.open().close()
    assert op.state() is StoreState.CURRENT
    store = op.store()
    try:
        report = inspect_schema(store.engine)
        assert report.problems() == []
        assert report.warnings() == []  # alembic_version is the store's own
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        store.dispose()
    code, out, err = op.run("devices", "list")
    assert code == 0, err
    actions = op.audit_actions()
    code, out, err = op.run("store", "upgrade")
    assert code == 0, err
    assert "current: nothing to do" in out
    assert op.audit_actions() == actions


def test_a_store_at_a_revision_this_version_does_not_know_is_refused(
    operator: Operator,
) -> None:
    """A store a newer cloud stub upgraded: refused by the service and by `upgrade`,
    naming the revision; nothing is changed."""
    op = operator
    op.open().close()
    op.sql("UPDATE alembic_version SET version_num = 'ffff9999'")
    op.refused("revision ffff9999", "does not know")
    actions = op.audit_actions()
    code, out, err = op.run("store", "upgrade")
    assert code == 1, out
    assert "revision ffff9999" in err
    assert "upgraded by a newer version" in err
    assert op.audit_actions() == actions


def test_tables_changed_by_hand_at_the_head_are_refused_by_name(operator: Operator) -> None:
    """A store at the head whose table lost a column (changed by hand, or the tables of
    another backup): the revision alone would pass, the tables are compared too."""
    op = operator
    op.open().close()
    op.sql("ALTER TABLE devices DROP COLUMN revoked_at")
    op.refused("column devices.revoked_at is missing", "changed by hand")
    code, out, err = op.run("store", "upgrade")
    assert code == 1, out
    assert "column devices.revoked_at is missing" in err
    assert "changed by hand" in err
    assert op.state() is StoreState.CURRENT


def test_a_store_older_than_the_previous_release_is_refused_and_left_alone(
    operator: Operator,
) -> None:
    """Tables from before the previous release (no `devices.revoked_at`): stamping and
    upgrading it would leave tables that do not match, so the whole upgrade is rolled
    back (no alembic_version, no audit entry) and the column is named."""
    op = operator
    make_previous_release_store(op.store_url)
    op.sql("ALTER TABLE devices DROP COLUMN revoked_at")
    before = snapshot(op.store_url)
    code, out, err = op.run("store", "upgrade")
    assert code == 1, out
    assert "column devices.revoked_at is missing" in err
    assert "older than the previous release" in err
    assert "Nothing was changed" in err
    assert VERSION_TABLE not in op.tables()
    assert snapshot(op.store_url) == before


def test_an_upgrade_that_fails_part_way_leaves_the_old_store(
    operator: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stamp, the revisions and the audit entry are one transaction: when the audit
    append fails after the stamp ran, the store is as the previous release left it
    (both dialects roll DDL back), and the upgrade can simply be run again."""
    op = operator
    make_previous_release_store(op.store_url)
    before = snapshot(op.store_url)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise StoreError("the audit chain refused the entry")

    with monkeypatch.context() as patch:
        patch.setattr(AuditTrail, "append", refuse)
        code, out, err = op.run("store", "upgrade")
    assert code == 1, out
    assert "the audit chain refused the entry" in err
    assert VERSION_TABLE not in op.tables()
    assert snapshot(op.store_url) == before

    code, out, err = op.run("store", "upgrade")  # the control: the same run, unpatched
    assert code == 0, err
    assert op.state() is StoreState.CURRENT


def test_tables_the_models_do_not_know_only_warn(
    operator: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator's own table and column in a current store: warned about at start-up,
    left alone, no reason to refuse."""
    op = operator
    op.open().close()
    op.sql("ALTER TABLE devices ADD COLUMN legacy_note TEXT",
           "CREATE TABLE operator_notes (id INTEGER PRIMARY KEY, note TEXT)")
    with caplog.at_level(logging.WARNING, logger="cloud_stub.store.schema"):
        op.open().close()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "devices.legacy_note" in warned
    assert "operator_notes" in warned
    code, _, err = op.run("devices", "list")
    assert code == 0, err


# --- a store behind the head -----------------------------------------------------------
#
# "Behind" needs a revision after this version's head: the fixture copies the package's
# revisions and adds one after the head like a real change (ADR 0016, "Adding a
# revision"): a nullable column on `tokens` backfilled with the sha256 of each row's
# `jws`. The cloud stub is pointed at the copy (`migrate.MIGRATIONS`).

NEXT_REVISION = '''"""Add tokens.test_sha256, the sha256 of the issued token, backfilled.

Revision ID: {revision}
Revises: {head}
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "{revision}"
down_revision: str | None = "{head}"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("test_sha256", sa.String(64), nullable=True))
    tokens = sa.table("tokens", sa.column("jti", sa.String), sa.column("jws", sa.Text),
                      sa.column("test_sha256", sa.String))
    if op.get_context().as_sql:  # --dry-run: rows are not read offline
        return
    bind = op.get_bind()
    for jti, jws in bind.execute(sa.select(tokens.c.jti, tokens.c.jws)).all():
        digest = hashlib.sha256(jws.encode("ascii")).hexdigest()
        bind.execute(tokens.update().where(tokens.c.jti == jti).values(test_sha256=digest))


def downgrade() -> None:
    raise CommandError("the store is never downgraded (ADR 0016)")
'''


@pytest.fixture
def second_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    copy = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    head = migrate.head_revision()
    revision = f"{int(head) + 1:04d}"
    (copy / "versions" / f"{revision}_test_sha256.py").write_text(
        NEXT_REVISION.format(revision=revision, head=head))
    monkeypatch.setattr(migrate, "MIGRATIONS", copy)
    migrate._scripts.cache_clear()
    yield revision
    migrate._scripts.cache_clear()  # the real revisions again once the patch is undone


def _token_sha256(op: Operator) -> list[tuple[str, str, str | None]]:
    store = op.store()
    try:
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                text("SELECT jti, jws, test_sha256 FROM tokens ORDER BY jti"))]
    finally:
        store.dispose()


def test_a_store_behind_the_head_is_refused_then_upgraded_with_its_data(
    operator: Operator, monkeypatch: pytest.MonkeyPatch, second_revision: str,
) -> None:
    """A store at this release's head under a version with one revision more: refused by
    name with the revision to apply; `--dry-run` prints the ALTER TABLE; `upgrade`
    applies it, backfills every token and keeps every other row; the audit entry records
    from and to."""
    op = operator
    with monkeypatch.context() as patch:  # the store as this release made it: at its head
        patch.setattr(migrate, "MIGRATIONS", Path(migrate.__file__).resolve().parent / "migrations")
        migrate._scripts.cache_clear()
        made_at = migrate.head_revision()
        store = op.store()
        try:
            store.create_schema()
        finally:
            store.dispose()
    migrate._scripts.cache_clear()
    assert op.state() is StoreState.BEHIND
    op.refused(f"is at revision {made_at}", f"needs revision {second_revision}",
               f"{second_revision} (Add tokens.test_sha256",
               "cloud-stub store upgrade --deployment")

    code, out, err = op.run("store", "upgrade", "--dry-run")
    assert code == 0, err
    assert f"apply revision {second_revision}" in out
    assert "ALTER TABLE tokens ADD COLUMN test_sha256 VARCHAR(64)" in out
    assert op.state() is StoreState.BEHIND

    code, out, err = op.run("store", "upgrade")
    assert code == 0, err
    assert op.state() is StoreState.CURRENT
    store = op.store()
    try:
        with store.transaction() as session:
            last = session.execute(select(AuditRow).order_by(AuditRow.seq.desc())).scalars().first()
            assert last is not None
            assert last.action == "store.upgraded"
            assert last.detail["from"] == made_at
            assert last.detail["to"] == second_revision
            assert last.detail["revisions"] == [second_revision]
    finally:
        store.dispose()


def test_a_previous_release_store_is_stamped_then_brought_past_the_baseline(
    operator: Operator, second_revision: str,
) -> None:
    """The previous release's store, holding data, under a version with a revision after
    the baseline: stamped at 0001, then the revisions after it apply, the last adding and
    backfilling the column; every other
    row is unchanged and the audit chain verifies."""
    op = operator
    entries = make_previous_release_store(op.store_url)
    before = snapshot(op.store_url)
    op.refused("made before the cloud stub kept migrations", "then apply 0002")
    code, out, err = op.run("store", "upgrade")
    assert code == 0, err
    assert f"stamp revision {BASELINE}" in out
    assert "apply revision 0002" in out
    after = snapshot(op.store_url)
    for name in before:
        if name not in (*AUDIT_TABLES, "tokens"):
            assert after[name] == before[name], name
    assert [row[:-1] for row in after["tokens"]] == before["tokens"]  # one column more
    tokens = _token_sha256(op)
    assert tokens
    for _jti, jws, digest in tokens:
        assert digest == hashlib.sha256(jws.encode("ascii")).hexdigest()
    code, out, err = op.run("audit", "verify")
    assert code == 0, err
    assert f"{entries + 1} entries" in out
