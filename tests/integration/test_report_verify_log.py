"""The transparency report recounted from the public log: equal counts agree, a release
missing from the log or an extra one in it is named (cloud_stub.services.log_recount)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from cloud_stub.domain.transparency import build_report
from cloud_stub.services.log_recount import differences, read_tally, tally
from protocol.tlog.policy import parse_policy
from protocol.tlog.statement import ReleaseStatement
from tests.fixtures.deployment import OperatorCli, TestDeployment
from tests.fixtures.tlog import TlogNetwork
from tests.fixtures.waiting import wait_until
from tests.unit.test_transparency import DECISIONS, NOW, RELEASES, REQUESTS

BASIS = {r.request_id: r.basis for r in REQUESTS}


def _statement(jti: str, basis: str) -> bytes:
    warrant = basis == "warrant"
    return ReleaseStatement(
        device_tag="aa" * 32,
        token_sha256=hashlib.sha256(jti.encode()).hexdigest(),
        basis=basis,
        window_start="2026-06-01T09:00:00Z",
        window_end="2026-06-01T11:00:00Z",
        iat=1780315190,
        seq=1,
        court="demo-district-court" if warrant else None,
        docket_sha256="ef" * 32 if warrant else None,
    ).encode()


STATEMENTS = [_statement(r.jti, BASIS[r.request_id]) for r in RELEASES]
REPORT = build_report(REQUESTS, DECISIONS, RELEASES, now=NOW)


def test_the_report_agrees_with_a_log_holding_every_release() -> None:
    log = tally(STATEMENTS, len(STATEMENTS))
    assert log.releases == REPORT.releases == 7
    assert log.by_basis == {"emergency": 3, "preservation": 1, "warrant": 3}
    assert differences(REPORT, log) == []


def test_a_release_missing_from_the_log_or_an_extra_one_is_named() -> None:
    missing = differences(REPORT, tally(STATEMENTS[1:], 6))
    assert missing == [
        "releases: the report says 7, the log holds 6 release statements "
        "(emergency 3, preservation 1, warrant 2)"
    ]
    extra = differences(REPORT, tally([*STATEMENTS, _statement("ghost", "warrant")], 8))
    assert "the log holds 8" in extra[0]
    period = build_report(REQUESTS, DECISIONS, RELEASES, now=NOW, period_start=NOW)
    assert "whole history" in differences(period, tally(STATEMENTS, 7))[0]


def test_the_tally_is_read_from_the_real_log(tlog_network: TlogNetwork) -> None:
    with httpx.Client(base_url=tlog_network.log.url, timeout=40) as client:
        index = 0
        for entry in STATEMENTS:
            response = client.post("/add", content=entry)
            response.raise_for_status()
            index = int(response.text.split()[1])
        client.get("/proof", params={"index": index, "wait": 25}).raise_for_status()
    policy_text = tlog_network.policy_path.read_text().replace(
        f"log {tlog_network.log_vkey}\n", f"log {tlog_network.log_vkey} {tlog_network.log.url}\n"
    )

    def fetch(url: str) -> bytes:
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        return response.content

    log = read_tally(parse_policy(policy_text.encode()), fetch)
    assert log.size == len(STATEMENTS)
    assert differences(REPORT, log) == []


def test_cloud_stub_report_verify_log_agrees_then_names_a_difference(
    tlog_network: TlogNetwork,
    fresh_deployment: TestDeployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The operator's command against a real deployment, store and log: the empty
    database and the empty log agree; a release in the log the database never issued
    makes it exit 1 naming the count."""
    policy = tmp_path / "policy.txt"
    policy.write_text(
        tlog_network.policy_path.read_text().replace(
            f"log {tlog_network.log_vkey}\n",
            f"log {tlog_network.log_vkey} {tlog_network.log.url}\n",
        )
    )
    cli = OperatorCli(fresh_deployment, f"sqlite:///{tmp_path / 'store.sqlite3'}", capsys)
    wait_until("the empty log's quorum",
               lambda: httpx.get(tlog_network.log.url + "/checkpoint", timeout=10).status_code
               == 200, timeout=20, interval=0.1)
    code, _, err = cli.run("report", "--verify-log", str(policy))
    assert code == 0, err
    assert "the release log agrees (0 releases)" in err

    with httpx.Client(base_url=tlog_network.log.url, timeout=40) as client:
        index = int(client.post("/add", content=STATEMENTS[0]).text.split()[1])
        client.get("/proof", params={"index": index, "wait": 25}).raise_for_status()
    code, _, err = cli.run("report", "--verify-log", str(policy))
    assert code == 1
    assert "releases: the report says 0, the log holds 1 release statements (warrant 1)" in err
