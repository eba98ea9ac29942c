"""Rough edges of the API and of `serve`: a JSON body without its Content-Type is told
so (not "Input should be a valid dictionary"); a too-short reason says the minimum; an
approval made through the operator's CLI (another process, no broker link) reaches the
broker within a second or so, not at the next redelivery pass, and `serve` logs it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cloud_stub.domain.review_rules import Action
from cloud_stub.mqtt import CloudMqtt
from cloud_stub.services.cloud_service import CloudService
from cloud_stub.services.context import caller_of
from cloud_stub.store.models import Principal, Token
from protocol.topics import DeviceTopics
from tests.fixtures.broker import Broker, Inbox, subscribe
from tests.fixtures.cloud import CloudServer
from tests.fixtures.waiting import wait_until


def test_a_json_body_without_its_content_type_is_told_so(cloud: CloudServer) -> None:
    agency = cloud.principal("agency")
    body = json.dumps(cloud.world(agency, "porch-cam").warrant()).encode()
    answer = cloud.http.post("/v1/requests", content=body, headers=agency.headers)
    assert answer.status_code == 415, answer.text
    error = answer.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"]
    assert "valid dictionary" not in error["message"]


def test_a_short_reason_says_the_minimum(cloud: CloudServer) -> None:
    agency = cloud.principal("agency")
    reviewer = cloud.principal("reviewer", org="court-liaison")
    device = cloud.enroll()
    body = cloud.world(agency, device.device_id).warrant(device_ids=[device.device_id])
    request_id = cloud.submit(agency, body).json()["id"]
    for reason in ("", "ok"):
        answer = cloud.http.post(f"/v1/requests/{request_id}/approve",
                                 json={"reason": reason}, headers=reviewer.headers)
        assert answer.status_code in (400, 422), answer.text
        assert "at least 10 characters" in answer.json()["error"]["message"], answer.text


def test_a_cli_approval_is_published_at_once_and_logged(
    cloud: CloudServer, broker: Broker, link: CloudMqtt, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cloud_stub.mqtt")
    assert link.redelivery_tick_s() >= 20  # the old path waited for this pass
    agency = cloud.principal("agency")
    reviewer = cloud.principal("reviewer", org="court-liaison")
    device = cloud.enroll()
    inbox = Inbox()
    client = broker.client(device.device_id, inbox=inbox)
    subscribe(client, DeviceTopics(device.device_id, cloud.deployment.prefix).release)
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    body = cloud.world(agency, device.device_id).warrant(device_ids=[device.device_id])
    request_id = cloud.submit(agency, body).json()["id"]

    # The operator's CLI: its own service on the same store, with no broker link.
    url = cloud.service.store.engine.url.render_as_string(hide_password=False)
    cli = CloudService.open(cloud.deployment.layout.root, store_url=url)
    try:
        with cli.store.transaction() as session:
            row = session.execute(
                select(Principal).where(Principal.name == reviewer.name)).scalar_one()
            caller = caller_of(row)
        view = cli.reviewing.decide(caller, request_id, Action.APPROVE,
                                    "Warrant verified with the clerk.")
    finally:
        cli.close()
    assert view.status == "released"

    def published() -> bool:
        with cloud.service.store.transaction() as session:
            token = session.execute(
                select(Token).where(Token.request_id == request_id)).scalar_one()
            return token.status == "published"

    wait_until("the token published", published, timeout=10)  # before the 30 s redelivery
    assert inbox.get().payload
    logged = [r.getMessage() for r in caplog.records if r.name == "cloud_stub.mqtt"]
    assert any(f"published a release token for {device.device_id}" in m for m in logged)
