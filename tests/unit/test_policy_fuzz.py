"""Adversarial bodies: the legal check answers ValidationError or PolicyViolation, never
anything else, and no change to a court-signed field ever passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cloud_stub.policy import PolicyViolation, WarrantRequest, WarrantStatement, build_policy
from cloud_stub.policy.requests import parse_request
from tests.fixtures.policy import PolicyWorld

POLICY = build_policy()
WORLD = PolicyWorld()
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
offsets = st.sampled_from([UTC, *(timezone(timedelta(hours=h)) for h in (-12, -5, 5, 14))])
# Mostly around "now" (so the rules run, not only the schema), sometimes at the extremes
# of what datetime can hold (so arithmetic near the edges is exercised).
near_now = st.datetimes(
    min_value=datetime(2026, 6, 1), max_value=datetime(2027, 6, 1), timezones=offsets
)
extreme = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
instants = st.one_of(near_now, near_now, near_now, extreme).map(lambda d: d.isoformat())
tricky_strings = st.sampled_from(
    ["", " ", "*", "all", "all devices", "area:downtown", "age1", "AGE1QQQ", "\u202e",
     "porch-cam", "a" * 128, "a" * 129, "2026-11-29T12:00:00Z", "0" * 64, "-1", "null"]
)  # fmt: skip
field_values = json_values | instants | tricky_strings


def decide(body: Any) -> str:
    """Run the whole check; return 'invalid', a violation code, or 'pass'."""
    try:
        request = parse_request(body)
    except ValidationError:
        return "invalid"
    try:
        POLICY.check(request, WORLD.ctx())
    except PolicyViolation as violation:
        refusal = violation
    else:
        return "pass"
    assert refusal.reason.strip(), "every refusal carries a human reason"
    return str(refusal.code)


@FUZZ
@given(basis=st.sampled_from(["warrant", "emergency", "preservation", "voluntary", "x"]),
       rest=st.dictionaries(st.text(max_size=20), field_values, max_size=8))  # fmt: skip
def test_arbitrary_bodies_never_crash_the_check(basis: str, rest: dict[str, Any]) -> None:
    decide({**rest, "basis": basis})


@FUZZ
@given(body=json_values)
def test_arbitrary_json_never_crashes_the_check(body: Any) -> None:
    decide(body)


def _mutate(base: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    body = dict(base)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        key = data.draw(st.sampled_from(sorted(body)))
        if data.draw(st.booleans()):
            del body[key]
            if not body:
                break
        else:
            body[key] = data.draw(field_values)
    return body


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["warrant", "emergency", "preservation"]))
def test_mutated_valid_bodies_never_crash_the_check(data: st.DataObject, kind: str) -> None:
    base = {"warrant": WORLD.warrant, "emergency": WORLD.emergency,
            "preservation": WORLD.preservation}[kind]()  # fmt: skip
    assert decide(base) == "pass"
    decide(_mutate(base, data) | {"basis": kind})


SIGNED = WORLD.warrant()
SIGNED_STATEMENT = WarrantStatement.from_request(WarrantRequest.model_validate(SIGNED))


@FUZZ
@given(data=st.data())
def test_no_change_to_a_signed_warrant_passes_unless_the_statement_is_unchanged(
    data: st.DataObject,
) -> None:
    # Whatever an agency edits after the court signed, the request passes only if the
    # statement the court signed is byte-for-byte what the request now says.
    body = _mutate(SIGNED, data) | {"basis": "warrant"}
    if decide(body) == "pass":
        statement = WarrantStatement.from_request(WarrantRequest.model_validate(body))
        assert statement.canonical_bytes() == SIGNED_STATEMENT.canonical_bytes()


@FUZZ
@given(start=instants, end=instants, issued=instants, expires=instants, due=instants)
def test_extreme_instants_never_overflow(
    start: str, end: str, issued: str, expires: str, due: str
) -> None:
    window = {"start": start, "end": end}
    decide(WORLD.warrant(issued=issued, expires=expires, window=window))
    decide(WORLD.emergency(window=window, followup_due=due))
    decide(WORLD.preservation(window=window))
