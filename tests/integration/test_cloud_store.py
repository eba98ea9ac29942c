"""The store on SQLite and on a real PostgreSQL: the same tests, both backends.

Covers what the service relies on the database for: API keys kept only as hashes,
``seq`` strictly increasing per device under concurrent signers, the audit chain's
appends serialized under concurrency, and the chain detecting any edited, removed or
reordered row (and a removed tail) in the real store. The last test runs the whole
submit-approve-release flow over HTTP against PostgreSQL.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from cloud_stub.domain.audit_chain import AuditChainBroken
from cloud_stub.errors import AuthenticationError
from cloud_stub.store import Store
from cloud_stub.store.audit_log import AuditTrail
from cloud_stub.store.models import AuditRow, Principal
from cloud_stub.store.principals import authenticate, create_principal
from cloud_stub.store.sequence import allocate_seq, ensure_counter, lock_counters
from tests.fixtures.cloud import open_cloud
from tests.fixtures.deployment import TestDeployment

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    s.create_schema()
    yield s
    s.dispose()


def test_api_keys_are_stored_only_as_hashes(store: Store) -> None:
    with store.transaction() as session:
        row, key = create_principal(session, name="metro-pd", role="agency", org="metro-pd",
                                    now=NOW)
        assert key not in (row.key_sha256, row.key_id)
    with store.transaction() as session:
        stored = session.execute(select(Principal)).scalar_one()
        encoded_secret = key.split("_", 2)[2]  # sdk_<key id>_<secret>; the secret may hold "_"
        secret_hex = base64.urlsafe_b64decode(encoded_secret + "=").hex()
        for column in Principal.__table__.columns:
            value = str(getattr(stored, column.key))
            assert encoded_secret not in value, column.key
            assert secret_hex not in value, column.key
        assert authenticate(session, key).name == "metro-pd"
        with pytest.raises(AuthenticationError):
            authenticate(session, key[:-2] + ("AA" if not key.endswith("AA") else "BB"))
        stored.disabled = True
    with store.transaction() as session, pytest.raises(AuthenticationError):
        authenticate(session, key)


def test_seq_is_strictly_increasing_under_concurrent_signers(store: Store) -> None:
    with store.transaction() as session:
        ensure_counter(session, "porch-cam")
    got: list[int] = []
    lock = threading.Lock()

    def signer() -> None:
        for _ in range(15):
            with store.transaction() as session:
                value = allocate_seq(session, "porch-cam")
            with lock:
                got.append(value)

    threads = [threading.Thread(target=signer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 61))


def _fill(store: Store, n: int) -> AuditTrail:
    trail = AuditTrail(store)
    for i in range(n):
        with store.transaction() as session:
            trail.append(session, at=NOW + timedelta(seconds=i), actor="reviewer:alice",
                         action="request.approve", subject=f"request:{i}",
                         detail={"reason": f"reason {i}", "n": i})
    return trail


def test_concurrent_appends_keep_one_chain(store: Store) -> None:
    trail = AuditTrail(store)

    def writer(k: int) -> None:
        for i in range(10):
            with store.transaction() as session:
                trail.append(session, at=NOW, actor=f"w{k}", action="x", subject=f"s{i}",
                             detail={"i": i})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = trail.verify()
    assert report.entries == 40
    assert report.head_seq == 40


def test_entries_queued_for_the_commit_follow_what_was_appended_meanwhile(store: Store
                                                                          ) -> None:
    """An approval queues its entries for its commit and signs meanwhile without the
    chain's lock: an entry another transaction appends then is not held up by it, and
    the approval's entries still come together, in their order, on one chain."""
    if not store.locks_rows:
        pytest.skip("SQLite serializes whole writing transactions")
    trail = _fill(store, 1)
    queued, appended = threading.Event(), threading.Event()
    outcome: list[object] = []

    def approval() -> None:
        try:
            with store.transaction() as session:
                allocate_seq(session, "porch-cam")  # locks the device's counter
                for i in range(3):
                    trail.append_at_commit(session, at=NOW, actor="service:signer",
                                           action="token.issued", subject=f"token:{i}",
                                           detail={"i": i})
                queued.set()
                outcome.append(appended.wait(30))
        except Exception as exc:  # reported below, on the test's thread
            outcome.append(exc)

    with store.transaction() as session:
        ensure_counter(session, "porch-cam")
    thread = threading.Thread(target=approval)
    thread.start()
    assert queued.wait(30)
    with store.transaction() as session:  # a device's result, while the approval signs
        trail.append(session, at=NOW, actor="device:porch-cam", action="token.uploaded",
                     subject="token:x", detail={})
    appended.set()
    thread.join(30)
    assert outcome == [True]
    with store.transaction() as session:
        subjects = [e.subject for e in trail.entries(session)]
    assert subjects == ["request:0", "token:x", "token:0", "token:1", "token:2"]
    assert trail.verify().entries == 5


def test_entries_queued_for_a_rolled_back_commit_are_dropped(store: Store) -> None:
    trail = _fill(store, 1)

    def failing_approval() -> None:
        with store.transaction() as session:
            trail.append_at_commit(session, at=NOW, actor="a", action="b", subject="c",
                                   detail={})
            raise RuntimeError("the approval failed after queueing its entry")

    with pytest.raises(RuntimeError):
        failing_approval()
    with store.transaction() as session:
        trail.append_at_commit(session, at=NOW, actor="a", action="b", subject="d", detail={})
    with store.transaction() as session:
        assert [e.subject for e in trail.entries(session)] == ["request:0", "d"]
    assert trail.verify().entries == 2


def test_an_entry_that_cannot_be_hashed_is_refused_where_it_is_queued(store: Store) -> None:
    trail = AuditTrail(store)
    with pytest.raises(ValueError, match="plain JSON"), store.transaction() as session:
        trail.append_at_commit(session, at=NOW, actor="a", action="b", subject="c",
                               detail={"at": NOW})
    assert trail.verify().entries == 0


def test_signers_of_overlapping_devices_in_any_order_do_not_deadlock(store: Store) -> None:
    devices = ["cam-a", "cam-b", "cam-c"]
    with store.transaction() as session:
        for device in devices:
            ensure_counter(session, device)
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def signer(order: list[str]) -> None:
        try:
            for _ in range(10):
                start.wait(30)
                with store.transaction() as session:
                    lock_counters(session, order)
                    for device in order:
                        allocate_seq(session, device)
        except BaseException as exc:  # reported below, on the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=signer, args=(order,))
               for order in (devices, devices[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    with store.transaction() as session:
        assert [allocate_seq(session, d) for d in devices] == [21, 21, 21]


def test_an_entry_appended_with_microseconds_still_verifies(store: Store) -> None:
    """The store keeps whole seconds; an entry hashed with a time that has microseconds
    must be hashed as it will be read back, or `audit verify` would call it edited."""
    trail = _fill(store, 1)
    with store.transaction() as session:
        entry = trail.append(session, at=NOW.replace(microsecond=654_321), actor="admin:a",
                             action="device.revoked", subject="device:x", detail={})
    assert entry.at == NOW.replace(microsecond=0)
    report = trail.verify()
    assert report.entries == 2


def test_a_rolled_back_change_leaves_no_audit_entry(store: Store) -> None:
    trail = _fill(store, 2)

    def failing_change() -> None:
        with store.transaction() as session:
            trail.append(session, at=NOW, actor="a", action="b", subject="c", detail={})
            raise RuntimeError("the state change failed after its audit entry")

    with pytest.raises(RuntimeError):
        failing_change()
    assert trail.verify().entries == 2


def test_the_audit_chain_detects_an_edited_row(store: Store) -> None:
    trail = _fill(store, 6)
    assert trail.verify().entries == 6
    with store.transaction() as session:
        session.execute(update(AuditRow).where(AuditRow.seq == 3)
                        .values(detail={"reason": "nothing to see", "n": 2}))
    with pytest.raises(AuditChainBroken) as info:
        trail.verify()
    assert info.value.seq == 3
    assert "edited" in info.value.reason


def test_the_audit_chain_detects_an_edited_actor(store: Store) -> None:
    trail = _fill(store, 4)
    with store.transaction() as session:
        session.execute(update(AuditRow).where(AuditRow.seq == 2).values(actor="reviewer:bob"))
    with pytest.raises(AuditChainBroken) as info:
        trail.verify()
    assert info.value.seq == 2


def test_the_audit_chain_detects_a_removed_row(store: Store) -> None:
    trail = _fill(store, 6)
    with store.transaction() as session:
        session.execute(delete(AuditRow).where(AuditRow.seq == 4))
    with pytest.raises(AuditChainBroken) as info:
        trail.verify()
    assert info.value.seq == 4
    assert "removed" in info.value.reason


def test_the_audit_chain_detects_reordered_rows(store: Store) -> None:
    trail = _fill(store, 6)
    with store.transaction() as session:
        two, three = (session.get(AuditRow, 2), session.get(AuditRow, 3))
        assert two is not None
        assert three is not None
        fields = ("at", "actor", "action", "subject", "detail", "prev_hash", "hash")
        a = {f: getattr(two, f) for f in fields}
        b = {f: getattr(three, f) for f in fields}
        for f in fields:
            setattr(two, f, b[f])
            setattr(three, f, a[f])
    with pytest.raises(AuditChainBroken) as info:
        trail.verify()
    assert info.value.seq == 2


def test_the_audit_chain_detects_a_removed_tail(store: Store) -> None:
    trail = _fill(store, 6)
    with store.transaction() as session:
        session.execute(delete(AuditRow).where(AuditRow.seq >= 5))
    with pytest.raises(AuditChainBroken) as info:
        trail.verify()
    assert "head" in info.value.reason


@pytest.mark.slow
def test_the_service_runs_on_the_store(store_url: str, deployment: TestDeployment,
                                       tmp_path: Path) -> None:
    """Submit, review and release over HTTP with this backend behind the service."""
    for cloud in open_cloud(deployment, tmp_path, store_url=store_url):
        agency = cloud.principal("agency", org="metro-pd")
        reviewer = cloud.principal("reviewer", org="legal")
        device = cloud.enroll()
        now = datetime.now(UTC)
        cloud.escrow_epoch(device.device_id, now - timedelta(hours=20),
                           now - timedelta(hours=19))
        world = cloud.world(agency, device.device_id)
        submitted = cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
        assert submitted.status_code == 201, submitted.text
        refused = cloud.submit(agency, {"basis": "voluntary"})
        assert refused.json()["error"]["code"] == "voluntary_requests_discontinued"
        request_id = submitted.json()["id"]
        approved = cloud.http.post(f"/v1/requests/{request_id}/approve",
                                   json={"reason": "Warrant verified with the court."},
                                   headers=reviewer.headers)
        assert approved.json()["status"] == "released", approved.text
        report = cloud.http.get("/v1/transparency").json()
        assert report["requests"] == 2
        assert report["refusals_by_code"] == {"voluntary_requests_discontinued": 1}
        assert cloud.service.core.audit.verify().entries >= 5
