"""Approvals that arrive together sign one at a time (`ServiceLimits.signing_at_once`),
so the service's one interpreter still records device results meanwhile
(docs/architecture.md, "One approval signs at a time"); each of them still releases.

On PostgreSQL, whose row locks let approvals of different requests run side by side
(SQLite serializes whole writing transactions, so it would hide an overlap)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cloud import CloudServer, open_cloud
from tests.fixtures.deployment import TestDeployment

pytestmark = pytest.mark.postgres

APPROVALS = 4


@pytest.fixture
def cloud(deployment: TestDeployment, postgres_store_url: str, tmp_path: Path
          ) -> Iterator[CloudServer]:
    yield from open_cloud(deployment, tmp_path, store_url=postgres_store_url)


def test_approvals_sent_together_sign_one_at_a_time_and_all_release(
    cloud: CloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    agency = cloud.principal("agency")
    reviewer = cloud.principal("reviewer", org="court-liaison")
    now = datetime.now(UTC)
    requests = []
    for _ in range(APPROVALS):
        device = cloud.enroll()
        cloud.escrow_epoch(device.device_id, now - timedelta(hours=20),
                           now - timedelta(hours=19))
        world = cloud.world(agency, device.device_id)
        response = cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
        assert response.status_code == 201, response.text
        requests.append(response.json()["id"])

    issue = cloud.service.issuer.issue
    lock = threading.Lock()
    inside = 0
    most = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            time.sleep(0.05)  # long enough that approvals sent together would overlap
            return issue(*args, **kwargs)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(cloud.service.issuer, "issue", counted)
    start = threading.Barrier(APPROVALS)

    def approve(request_id: str) -> str:
        start.wait()
        response = cloud.http.post(f"/v1/requests/{request_id}/approve",
                                   json={"reason": "Warrant verified with the issuing court."},
                                   headers=reviewer.headers)
        assert response.status_code == 200, response.text
        return str(response.json()["status"])

    with ThreadPoolExecutor(APPROVALS) as pool:
        statuses = list(pool.map(approve, requests))
    assert statuses == ["released"] * APPROVALS
    assert most == 1
