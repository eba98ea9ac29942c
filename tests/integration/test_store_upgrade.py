"""An old store meets a newer cloud stub: refused with a named error, then `cloud-stub
store upgrade` brings it up to date; on real SQLite files and a real PostgreSQL.

An "old" store is one this version made, with what a later change added taken away
again by plain SQL (`devices.revoked_at` dropped, a table dropped), so every other table
and row is as the service wrote it. The service is started the ways an operator starts
it: `cloud-stub serve` and another command through the CLI's `main`, and
`CloudService.open` as the tests' cloud does. Each refusal stands beside the positive
control of a current store passing the same check.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from cloud_stub.errors import StoreError
from cloud_stub.service import CloudService
from cloud_stub.store import Store
from cloud_stub.store.audit_log import AuditTrail
from cloud_stub.store.models import AuditRow, Device
from cloud_stub.store.schema import StoreOutdated, inspect_schema
from tests.fixtures.deployment import OperatorCli, TestDeployment


class Operator(OperatorCli):
    """The `cloud-stub` command line, the service and the raw store of one deployment."""

    def open(self) -> CloudService:
        return CloudService.open(self.deployment.layout.root, store_url=self.store_url)

    def sql(self, *statements: str) -> None:
        """Change the store behind the service's back, as an older version left it."""
        store = Store(self.store_url)
        try:
            with store.engine.begin() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            store.dispose()

    def audit_actions(self) -> list[str]:
        store = Store(self.store_url)
        try:
            with store.transaction() as session:
                return list(session.execute(
                    select(AuditRow.action).order_by(AuditRow.seq)).scalars())
        finally:
            store.dispose()

    def schema_problems(self) -> list[str]:
        store = Store(self.store_url)
        try:
            return inspect_schema(store.engine).problems()
        finally:
            store.dispose()


@pytest.fixture
def operator(fresh_deployment: TestDeployment, store_url: str,
             capsys: pytest.CaptureFixture[str]) -> Operator:
    """A deployment with one enrolled device whose store the service has created."""
    fresh_deployment.enroll_device(fresh_deployment.new_device_id("porch"))
    op = Operator(fresh_deployment, store_url, capsys)
    op.open().close()  # a new store: created from the models
    return op


def _device_id(op: Operator) -> str:
    [record] = [p.name for p in op.deployment.layout.devices_dir.iterdir()]
    return record


def test_a_current_store_passes_the_check_and_needs_no_upgrade(operator: Operator) -> None:
    """Positive control for every refusal below: the store the service made matches the
    models exactly on this backend (no column reads as missing or of another type), the
    commands run, and `store upgrade` has nothing to do."""
    op = operator
    assert op.schema_problems() == []
    code, out, err = op.run("devices", "list")
    assert code == 0, err
    assert _device_id(op) in out
    before = op.audit_actions()
    code, out, err = op.run("store", "upgrade")
    assert code == 0, err
    assert "is current: nothing to do" in out
    assert op.audit_actions() == before


def test_an_old_store_is_refused_by_name_and_upgrade_fixes_it(operator: Operator) -> None:
    """The store from before `devices.revoked_at`: `serve` and the CLI refuse with one
    error naming the column and the command; `--dry-run` changes nothing; `upgrade` adds
    the column with an audit entry; `devices revoke` then works on the store; a second
    upgrade is a no-op."""
    op = operator
    device_id = _device_id(op)
    op.sql("ALTER TABLE devices DROP COLUMN revoked_at")
    assert op.schema_problems() == ["column devices.revoked_at is missing"]

    for argv in (("serve", "--no-mqtt"), ("devices", "list")):
        code, out, err = op.run(*argv)
        assert code == 1, out
        assert "column devices.revoked_at is missing" in err
        assert "cloud-stub store upgrade --deployment" in err
        assert "[store_outdated]" in err
        assert "Traceback" not in err
    with pytest.raises(StoreOutdated, match=r"devices\.revoked_at"):
        op.open()

    actions = op.audit_actions()
    code, out, err = op.run("store", "upgrade", "--dry-run")
    assert code == 0, err
    assert "add column devices.revoked_at (BIGINT, nullable)" in out
    assert "nothing was changed" in out
    assert op.schema_problems() == ["column devices.revoked_at is missing"]
    assert op.audit_actions() == actions

    code, out, err = op.run("store", "upgrade")
    assert code == 0, err
    assert "add column devices.revoked_at" in out
    assert op.schema_problems() == []
    assert op.audit_actions() == [*actions, "store.upgraded"]

    code, out, err = op.run("devices", "revoke", device_id, "--reason", "stolen")
    assert code == 0, err
    service = op.open()
    try:
        with service.store.transaction() as session:
            row = session.get(Device, device_id)
            assert row is not None
            assert row.revoked_at is not None
        assert service.core.audit.verify().entries == len(actions) + 2
    finally:
        service.close()
    code, out, err = op.run("audit", "verify")
    assert code == 0, err

    code, out, err = op.run("store", "upgrade")
    assert code == 0, err
    assert "is current: nothing to do" in out
    assert op.audit_actions() == [*actions, "store.upgraded", "device.revoked"]


def test_a_missing_table_is_created_and_extras_only_warn(
    operator: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    """A table a later version added is missing (refused, named, created by upgrade with
    its constraints); a column and a table the models do not know are warned about and
    left alone, before and after."""
    op = operator
    op.sql("DROP TABLE owner_notices",
           "ALTER TABLE devices ADD COLUMN legacy_note TEXT",
           "CREATE TABLE operator_notes (id INTEGER PRIMARY KEY, note TEXT)")
    assert op.schema_problems() == ["table owner_notices is missing"]
    code, _, err = op.run("devices", "list")
    assert code == 1
    assert "table owner_notices is missing" in err
    assert "legacy_note" not in err  # extras are no reason to refuse

    code, out, err = op.run("store", "upgrade")
    assert code == 0, err
    assert "create table owner_notices" in out
    assert "column devices.legacy_note is not one of the cloud stub's" in err
    assert "table operator_notes is not one of the cloud stub's" in err

    with caplog.at_level(logging.WARNING, logger="cloud_stub.store.schema"):
        op.open().close()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "devices.legacy_note" in warned
    assert "operator_notes" in warned
    service = op.open()
    try:
        with service.store.transaction() as session:  # the new table works, extras kept
            session.execute(text(
                "INSERT INTO owner_notices (device_id, jti, released_at, received_at) "
                "VALUES ('d', 'j', '2026-01-01T00:00:00Z', 1)"))
            with pytest.raises(IntegrityError, match=r"(?i)unique"), session.begin_nested():
                session.execute(text(
                    "INSERT INTO owner_notices (device_id, jti, released_at, received_at) "
                    "VALUES ('d', 'j', '2026-01-01T00:00:00Z', 2)"))
            assert session.execute(text("SELECT count(*) FROM operator_notes")).scalar() == 0
            assert session.execute(text("SELECT legacy_note FROM devices")).all()
    finally:
        service.close()


def test_upgrade_refuses_what_it_cannot_do_safely_and_changes_nothing(
    operator: Operator,
) -> None:
    """A missing NOT NULL column without a server default, and a column of another type,
    are refused by name; the nullable column that could be added is not added either,
    so no half-upgraded store is left."""
    op = operator
    op.sql("ALTER TABLE devices DROP COLUMN revoked_at",
           "ALTER TABLE devices DROP COLUMN identity_pub",
           "DROP TABLE owner_notices",
           "CREATE TABLE owner_notices (id INTEGER PRIMARY KEY, device_id VARCHAR(128) NOT "
           "NULL, jti VARCHAR(36) NOT NULL, released_at BIGINT NOT NULL, received_at BIGINT "
           "NOT NULL)")
    problems = op.schema_problems()
    assert "column devices.revoked_at is missing" in problems
    assert "column devices.identity_pub is missing" in problems
    assert "column owner_notices.released_at is BIGINT, expected VARCHAR(40)" in problems

    code, out, err = op.run("devices", "list")
    assert code == 1
    assert "never changes a column's type" in err
    actions = op.audit_actions()
    code, out, err = op.run("store", "upgrade")
    assert code == 1, out
    assert "nothing was changed" in err
    assert "column devices.identity_pub cannot be added: it is NOT NULL without a " \
           "server default" in err
    assert "column owner_notices.released_at is BIGINT, expected VARCHAR(40)" in err
    assert "revoked_at" not in err  # that one alone would have been fine
    assert op.schema_problems() == problems
    assert op.audit_actions() == actions


def test_an_upgrade_that_fails_part_way_leaves_the_old_store(
    operator: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steps and the audit entry are one transaction: when the audit append fails
    after the ALTER TABLE ran, the column is not there afterwards (both dialects roll
    DDL back), and the upgrade can simply be run again."""
    op = operator
    op.sql("ALTER TABLE devices DROP COLUMN revoked_at")

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise StoreError("the audit chain refused the entry")

    with monkeypatch.context() as patch:
        patch.setattr(AuditTrail, "append", refuse)
        code, out, err = op.run("store", "upgrade")
    assert code == 1, out
    assert "the audit chain refused the entry" in err
    assert op.schema_problems() == ["column devices.revoked_at is missing"]

    code, out, err = op.run("store", "upgrade")  # the control: the same run, unpatched
    assert code == 0, err
    assert op.schema_problems() == []
