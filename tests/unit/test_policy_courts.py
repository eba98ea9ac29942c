"""The court registry, the warrant statement, and `cloud-stub court sign|verify|list`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.cli import main as cloud_stub_main
from cloud_stub.policy import (
    Code,
    CourtRegistryError,
    PolicyContext,
    PolicyViolation,
    WarrantStatement,
    build_policy,
    load_court_registry,
    parse_court_registry,
    sign_warrant,
    verify_warrant_signature,
)
from cloud_stub.policy.courts import load_court_key
from cloud_stub.policy.requests import OrderType
from cloud_stub.provision.deployment import DEMO_COURT_ID
from protocol.keys import public_key_hex
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.policy import AGENCY, NOW, new_recipient, parse


def registry_bytes(**courts: str) -> bytes:
    return json.dumps(
        {
            "courts": {
                cid: {"name": f"Court {cid}", "public_key": key} for cid, key in courts.items()
            }
        }
    ).encode()


def statement(**changes: object) -> WarrantStatement:
    fields: dict[str, object] = {
        "court_id": "demo-district-court",
        "docket": "2026-MJ-1",
        "judge": "Hon. A",
        "order_type": OrderType.SEARCH_WARRANT,
        "issued": NOW - timedelta(hours=1),
        "expires": NOW + timedelta(days=3),
        "document_sha256": "ab" * 32,
        "device_ids": ("b-cam", "a-cam"),
        "window_start": NOW - timedelta(hours=10),
        "window_end": NOW - timedelta(hours=2),
    }
    fields.update(changes)
    return WarrantStatement(**fields)  # type: ignore[arg-type]


# --- registry -------------------------------------------------------------------------------


def test_a_registry_parses() -> None:
    key = Ed25519PrivateKey.generate()
    registry = parse_court_registry(registry_bytes(**{"demo-district-court": public_key_hex(key)}))
    assert list(registry) == ["demo-district-court"]
    assert registry["demo-district-court"].name == "Court demo-district-court"


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "courts"),
        (b'{"courts": {}, "extra": 1}', "courts"),
        (b'{"courts": {"Bad Id": {"name": "x", "public_key": "' + b"a" * 64 + b'"}}}', "Bad Id"),
        (b'{"courts": {"c": {"name": "x", "public_key": "AB"}}}', "public_key"),
        (b'{"courts": {"c": {"name": "x"}}}', "'c'"),
        (b'{"courts": {"c": {"name": "", "public_key": "' + b"a" * 64 + b'"}}}', "name"),
        (b'{"courts": {"c": {"name": "x", "public_key": "' + b"a" * 64 + b'", "k": 1}}}', "'c'"),
    ],
)
def test_a_bad_registry_is_refused_naming_the_problem(data: bytes, named: str) -> None:
    with pytest.raises(CourtRegistryError) as info:
        parse_court_registry(data, source="courts.json")
    assert named in str(info.value)
    assert "courts.json" in str(info.value)


def test_a_missing_registry_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CourtRegistryError, match="cannot read"):
        load_court_registry(tmp_path / "courts.json")


def test_an_oversized_registry_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "courts.json"
    path.write_bytes(b" " * (1024 * 1024 + 1))
    with pytest.raises(CourtRegistryError, match="larger"):
        load_court_registry(path)


def test_a_court_key_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "court.key"
    path.write_bytes(b"-----BEGIN NONSENSE-----\n")
    with pytest.raises(CourtRegistryError, match=str(path)):
        load_court_key(path)


# --- statement and signature ----------------------------------------------------------------


def test_the_statement_is_canonical() -> None:
    body = json.loads(statement().canonical_bytes())
    assert body["type"] == "doorbell-warrant-statement"
    assert body["device_ids"] == ["a-cam", "b-cam"]
    assert body["issued"] == "2026-11-29T11:00:00Z"
    assert (
        statement().canonical_bytes() == statement(device_ids=("a-cam", "b-cam")).canonical_bytes()
    )
    assert b" " not in statement(judge="HonA").canonical_bytes()


def test_sign_and_verify_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    registry = parse_court_registry(registry_bytes(**{"demo-district-court": public_key_hex(key)}))
    court = verify_warrant_signature(statement(), sign_warrant(statement(), key), registry)
    assert court.court_id == "demo-district-court"


def test_every_statement_field_is_covered_by_the_signature() -> None:
    key = Ed25519PrivateKey.generate()
    registry = parse_court_registry(registry_bytes(**{"demo-district-court": public_key_hex(key)}))
    signature = sign_warrant(statement(), key)
    changes: list[dict[str, object]] = [
        {"docket": "2026-MJ-2"},
        {"judge": "Hon. B"},
        {"order_type": OrderType.SUBPOENA},
        {"issued": NOW - timedelta(hours=2)},
        {"expires": NOW + timedelta(days=4)},
        {"document_sha256": "cd" * 32},
        {"device_ids": ("a-cam",)},
        {"window_start": NOW - timedelta(hours=11)},
        {"window_end": NOW - timedelta(hours=1)},
        {"notify_after": NOW + timedelta(days=1)},
    ]
    for change in changes:
        with pytest.raises(PolicyViolation) as info:
            verify_warrant_signature(statement(**change), signature, registry)
        assert info.value.code is Code.COURT_SIGNATURE_INVALID, change


def test_a_court_of_another_registry_is_unknown() -> None:
    key = Ed25519PrivateKey.generate()
    registry = parse_court_registry(registry_bytes(other=public_key_hex(key)))
    with pytest.raises(PolicyViolation) as info:
        verify_warrant_signature(statement(), sign_warrant(statement(), key), registry)
    assert info.value.code is Code.COURT_UNKNOWN


def test_one_courts_key_cannot_sign_for_another_court() -> None:
    # Two registered courts: court B's genuine key signing a statement naming court A.
    key_a, key_b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    registry = parse_court_registry(
        registry_bytes(**{"demo-district-court": public_key_hex(key_a), "b": public_key_hex(key_b)})
    )
    with pytest.raises(PolicyViolation) as info:
        verify_warrant_signature(statement(), sign_warrant(statement(), key_b), registry)
    assert info.value.code is Code.COURT_SIGNATURE_INVALID


# --- the CLI, against a deployment made by `cloud-stub init` --------------------------------


def sign_args(deployment: TestDeployment, document: Path, *extra: str) -> list[str]:
    return [
        "court", "sign",
        "--deployment", str(deployment.layout.root),
        "--court", DEMO_COURT_ID,
        "--document", str(document),
        "--docket", "2026-MJ-7",
        "--judge", "Hon. Ada Marsh",
        "--devices", "porch-cam,garage-cam",
        "--window-start", "2026-11-28T06:00:00Z",
        "--window-end", "2026-11-29T06:00:00+00:00",
        "--issued", "2026-11-29T10:00:00Z",
        *extra,
    ]  # fmt: skip


def test_court_sign_prints_a_warrant_the_policy_accepts(
    deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "warrant.pdf"
    document.write_bytes(b"%PDF-1.7 the warrant")
    assert cloud_stub_main(sign_args(deployment, document)) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["expires"] == "2026-12-09T10:00:00Z"  # --valid-days 10
    body = {
        **fields,
        "agency": "Metro Police Department",
        "investigator": "Det. Sam Ortiz",
        "contact": "s.ortiz@metro-pd.example",
        "agency_case_number": "MPD-2026-1187",
        "recipient": new_recipient(),
    }
    courts = load_court_registry(deployment.layout.court_registry)
    build_policy().check(parse(body), PolicyContext(now=NOW, courts=courts, requester=AGENCY))

    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(body), encoding="utf-8")
    verify = ["court", "verify", str(request_file), "--deployment", str(deployment.layout.root)]
    assert cloud_stub_main(verify) == 0
    assert "docket 2026-MJ-7" in capsys.readouterr().out

    body["device_ids"] = ["porch-cam", "garage-cam", "shed-cam"]
    request_file.write_text(json.dumps(body), encoding="utf-8")
    assert cloud_stub_main(verify) == 2
    assert "court_signature_invalid" in capsys.readouterr().err


def test_court_sign_refuses_an_unknown_court(
    deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "warrant.pdf"
    document.write_bytes(b"x")
    args = sign_args(deployment, document)
    args[args.index("--court") + 1] = "no-such-court"
    assert cloud_stub_main(args) == 1
    assert "no-such-court" in capsys.readouterr().err


def test_court_sign_refuses_a_naive_time(
    deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "warrant.pdf"
    document.write_bytes(b"x")
    args = sign_args(deployment, document)
    args[args.index("--window-start") + 1] = "2026-11-28T06:00:00"
    assert cloud_stub_main(args) == 2
    assert "no UTC offset" in capsys.readouterr().err


def test_court_list_shows_the_demo_court(
    deployment: TestDeployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cloud_stub_main(["court", "list", "--deployment", str(deployment.layout.root), "--json"])
        == 0
    )
    listed = json.loads(capsys.readouterr().out)
    assert [c["court_id"] for c in listed] == [DEMO_COURT_ID]


def test_the_installed_command_runs(deployment: TestDeployment) -> None:
    # The console entry point, as a tester types it.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cloud-stub"), "court", "list", "--deployment",
         str(deployment.layout.root)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert DEMO_COURT_ID in result.stdout


def test_court_check_runs_the_whole_legal_check_offline(
    fresh_deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = fresh_deployment
    for device_id in ("porch-cam", "garage-cam"):  # court check refuses unenrolled devices
        deployment.enroll_device(device_id)
    document = tmp_path / "warrant.pdf"
    document.write_bytes(b"%PDF-1.7 the warrant")
    assert cloud_stub_main(sign_args(deployment, document)) == 0
    body = {
        **json.loads(capsys.readouterr().out),
        "agency": "Metro Police Department",
        "investigator": "Det. Sam Ortiz",
        "contact": "s.ortiz@metro-pd.example",
        "agency_case_number": "MPD-2026-1187",
        "recipient": new_recipient(),
    }
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(body), encoding="utf-8")
    root = str(deployment.layout.root)
    check = ["court", "check", str(request_file), "--deployment", root]
    assert cloud_stub_main([*check, "--now", "2026-11-29T12:00:00Z"]) == 0
    assert "passes the legal check (warrant)" in capsys.readouterr().out
    # Three weeks later the same warrant has expired.
    assert cloud_stub_main([*check, "--now", "2026-12-20T12:00:00Z"]) == 3
    assert "[warrant_expired]" in capsys.readouterr().out
    # A stricter policy file refuses the 24 h window.
    policy = tmp_path / "policy.toml"
    policy.write_text("version = 1\n[warrant]\nmax_window_hours = 6\n", encoding="utf-8")
    assert cloud_stub_main([*check, "--now", "2026-11-29T12:00:00Z", "--policy", str(policy)]) == 3
    assert "[window_too_long]" in capsys.readouterr().out
    # A body that is not a request is a usage error naming the file.
    request_file.write_text('{"basis": "warrant", "area": "downtown"}', encoding="utf-8")
    assert cloud_stub_main([*check, "--now", "2026-11-29T12:00:00Z"]) == 2
    assert str(request_file) in capsys.readouterr().err
