"""The policy machinery: composition, dispatch, the context, the policy file, the codes."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud_stub.policy import (
    DESCRIPTIONS,
    AllOf,
    Code,
    ForBasis,
    PolicyContext,
    PolicyFileError,
    PolicyViolation,
    build_policy,
    load_limits,
)
from cloud_stub.policy import rules as rules_module
from cloud_stub.policy.preservation_rules import RefuseVoluntary
from cloud_stub.policy.requests import AnyRequest, WarrantRequest
from cloud_stub.policy.rules import FieldsPresent
from tests.fixtures.policy import PolicyWorld, parse

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


class Passes:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def check(self, request: object, ctx: PolicyContext) -> None:
        self.log.append(self.name)


class Fails:
    def __init__(self, log: list[str], code: Code) -> None:
        self.log, self.code = log, code

    def check(self, request: object, ctx: PolicyContext) -> None:
        self.log.append(str(self.code))
        raise PolicyViolation(self.code, "test rule")


def test_an_empty_all_of_is_an_error() -> None:
    # A policy that checks nothing must not pass everything (sigstore's AllOf habit).
    with pytest.raises(ValueError, match="at least one"):
        AllOf[object]([])


def test_all_of_runs_in_order_and_stops_at_the_first_violation(policy_world: PolicyWorld) -> None:
    log: list[str] = []
    policy = AllOf[object](
        [Passes(log, "a"), Fails(log, Code.WINDOW_MISSING), Fails(log, Code.COURT_UNKNOWN)]
    )
    with pytest.raises(PolicyViolation) as info:
        policy.check(object(), policy_world.ctx())
    assert info.value.code is Code.WINDOW_MISSING
    assert log == ["a", "window_missing"]


def test_all_of_passes_when_every_child_passes(policy_world: PolicyWorld) -> None:
    log: list[str] = []
    AllOf[object]([Passes(log, "a"), Passes(log, "b")]).check(object(), policy_world.ctx())
    assert log == ["a", "b"]


def test_for_basis_dispatches_to_the_basis_policy(policy_world: PolicyWorld) -> None:
    log: list[str] = []
    policy = ForBasis(
        warrant=Passes(log, "warrant"),
        emergency=Passes(log, "emergency"),
        preservation=Passes(log, "preservation"),
        voluntary=RefuseVoluntary(),
    )
    policy.check(parse(policy_world.warrant()), policy_world.ctx())
    policy.check(parse(policy_world.emergency()), policy_world.ctx())
    policy.check(parse(policy_world.preservation()), policy_world.ctx())
    assert log == ["warrant", "emergency", "preservation"]
    with pytest.raises(PolicyViolation) as info:
        policy.check(parse({"basis": "voluntary"}), policy_world.ctx())
    assert info.value.code is Code.VOLUNTARY_REQUESTS_DISCONTINUED


def test_for_basis_refuses_what_is_not_a_request(policy_world: PolicyWorld) -> None:
    log: list[str] = []
    policy = ForBasis(
        warrant=Passes(log, "w"),
        emergency=Passes(log, "e"),
        preservation=Passes(log, "p"),
        voluntary=Passes(log, "v"),
    )
    stranger: Any = object()
    with pytest.raises(PolicyViolation) as info:
        policy.check(stranger, policy_world.ctx())
    assert info.value.code is Code.BASIS_UNSUPPORTED
    assert log == []


def test_for_basis_requires_every_basis() -> None:
    with pytest.raises(TypeError):
        ForBasis(warrant=RefuseVoluntary())  # type: ignore[call-arg,arg-type]


def test_the_context_refuses_a_naive_clock(policy_world: PolicyWorld) -> None:
    with pytest.raises(ValueError, match="aware"):
        PolicyContext(now=datetime(2026, 1, 1), courts=policy_world.courts, requester="x")


def test_fields_present_refuses_unknown_fields_at_construction() -> None:
    with pytest.raises(ValueError, match="no field"):
        FieldsPresent(
            model=WarrantRequest,
            fields=("judge", "jduge"),
            code=Code.WARRANT_FIELD_MISSING,
            what="w",
        )
    with pytest.raises(ValueError, match="at least one"):
        FieldsPresent(model=WarrantRequest, fields=(), code=Code.WARRANT_FIELD_MISSING, what="w")


def test_the_clock_is_the_context_not_the_system(policy_world: PolicyWorld) -> None:
    # The same warrant is valid today and expired in a month: only ctx.now differs.
    policy = build_policy()
    request: AnyRequest = parse(policy_world.warrant())
    policy.check(request, policy_world.ctx())
    with pytest.raises(PolicyViolation) as info:
        policy.check(request, policy_world.ctx(now=policy_world.now + timedelta(days=30)))
    assert info.value.code is Code.WARRANT_EXPIRED


# --- the policy file ------------------------------------------------------------------------


def test_the_packaged_defaults_are_the_design_defaults() -> None:
    limits = load_limits()
    assert limits.warrant.max_window == timedelta(hours=72)
    assert limits.warrant.max_validity == timedelta(days=14)
    assert limits.emergency.max_window == timedelta(hours=12)
    assert limits.emergency.token_lifetime == timedelta(hours=1)
    assert limits.emergency.followup_due == timedelta(hours=48)
    assert limits.emergency.approvals == 2
    assert limits.preservation.max_hold == timedelta(days=90)
    assert limits.preservation.max_renewals == 1
    assert limits.for_basis("emergency") is limits.emergency
    with pytest.raises(KeyError):
        limits.for_basis("voluntary")


def test_a_tighter_policy_file_changes_the_decision(
    policy_world: PolicyWorld, tmp_path: Path
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("version = 1\n[warrant]\nmax_window_hours = 12\n", encoding="utf-8")
    body = policy_world.warrant()  # a 24 h window
    build_policy().check(parse(body), policy_world.ctx())
    with pytest.raises(PolicyViolation) as info:
        build_policy(path).check(parse(body), policy_world.ctx())
    assert info.value.code is Code.WINDOW_TOO_LONG


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("version = 1\n[warrant]\nmax_window_hourz = 12\n", "warrant.max_window_hourz"),
        ("version = 1\n[voluntary]\naccept = true\n", "voluntary"),
        ("version = 1\n[preservation]\nmax_hold_days = 91\n", "preservation.max_hold_days"),
        ("version = 1\n[preservation]\nmax_renewals = 2\n", "preservation.max_renewals"),
        ("version = 1\n[emergency]\napprovals = 1\n", "emergency.approvals"),
        ("version = 1\n[emergency]\nmax_window_hours = 48\n", "emergency.max_window_hours"),
        ('version = 1\n[warrant]\nmax_devices = "5"\n', "warrant.max_devices"),
        ("version = 2\n", "version"),
        ("[warrant]\n", "version"),
        ("version = 1\n[warrant\n", "not valid TOML"),
    ],
)
def test_a_bad_policy_file_is_refused_naming_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyFileError) as info:
        build_policy(path)
    assert named in str(info.value)
    assert str(path) in str(info.value)


def test_a_missing_policy_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read"):
        build_policy(tmp_path / "absent.toml")


def test_a_policy_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"version = 1\n# \xff\xfe\n")
    with pytest.raises(PolicyFileError, match="UTF-8"):
        build_policy(path)


# --- the codes ------------------------------------------------------------------------------


def test_every_code_is_described() -> None:
    assert set(DESCRIPTIONS) == set(Code)
    assert all(text.strip() for text in DESCRIPTIONS.values())


def test_every_code_is_raised_by_some_rule() -> None:
    announced: set[Code] = {Code.BASIS_UNSUPPORTED}  # raised by ForBasis
    for _, cls in inspect.getmembers(rules_module, inspect.isclass):
        announced.update(getattr(cls, "codes", ()))
    assert announced == set(Code)


def test_every_code_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    undocumented = [c.value for c in Code if f"`{c.value}`" not in text]
    assert undocumented == []
