"""When the cloud publishes a token again (ADR 0011), as a pure function of token facts
and a clock: first after `initial_s`, then doubling up to `max_s`; never at or after the
token's `exp`; never once a result moved the token out of `published`. And the
`[redelivery]` settings of deployment.toml refuse values that would break that."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud_stub.config import parse_deployment
from cloud_stub.domain.redelivery_policy import (
    PublishedToken,
    RedeliveryPolicy,
    due_for_redelivery,
    next_redelivery,
)
from cloud_stub.errors import ConfigError

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = RedeliveryPolicy(initial_s=60, max_s=3600)


def token(*, republished: int = 0, last: datetime = T0, status: str = "published",
          life: timedelta = timedelta(days=1), jti: str = "t1") -> PublishedToken:
    return PublishedToken(jti=jti, status=status, expires_at=T0 + life,
                          last_published_at=last, republished=republished)


def test_the_delay_doubles_from_the_first_and_stops_at_the_cap() -> None:
    delays = [POLICY.delay_s(n) for n in range(9)]
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert POLICY.delay_s(10_000) == 3600  # no overflow, still the cap


def test_due_only_once_the_delay_since_the_last_publish_has_passed() -> None:
    first = token()
    assert due_for_redelivery([first], now=T0 + timedelta(seconds=59), policy=POLICY) == []
    assert due_for_redelivery([first], now=T0 + timedelta(seconds=60), policy=POLICY) == ["t1"]
    # after that re-publish, the next one waits twice as long from it
    second = token(republished=1, last=T0 + timedelta(seconds=60))
    assert next_redelivery(second, POLICY) == T0 + timedelta(seconds=180)
    assert due_for_redelivery([second], now=T0 + timedelta(seconds=179), policy=POLICY) == []
    assert due_for_redelivery([second], now=T0 + timedelta(seconds=180),
                              policy=POLICY) == ["t1"]
    late = token(republished=30, last=T0)
    assert next_redelivery(late, POLICY) == T0 + timedelta(hours=1)


def test_never_at_or_after_exp() -> None:
    short = token(life=timedelta(seconds=90))
    assert next_redelivery(short, POLICY) == T0 + timedelta(seconds=60)
    assert due_for_redelivery([short], now=T0 + timedelta(seconds=89), policy=POLICY) == ["t1"]
    assert due_for_redelivery([short], now=T0 + timedelta(seconds=90), policy=POLICY) == []
    # the next slot would fall on or after exp: there is none
    assert next_redelivery(token(republished=1, last=T0 + timedelta(seconds=60),
                                 life=timedelta(seconds=180)), POLICY) is None
    assert next_redelivery(token(life=timedelta(seconds=60)), POLICY) is None


@pytest.mark.parametrize("status", [
    "issued", "deferred", "uploaded", "rejected", "preserved", "evidence_received",
])
def test_a_recorded_result_or_evidence_ends_it(status: str) -> None:
    done = token(status=status)
    assert next_redelivery(done, POLICY) is None
    assert due_for_redelivery([done], now=T0 + timedelta(hours=5), policy=POLICY) == []
    # the control: the same token still awaiting its result is due
    assert due_for_redelivery([token()], now=T0 + timedelta(hours=5), policy=POLICY) == ["t1"]


def test_several_tokens_keep_their_order_and_their_own_schedule() -> None:
    tokens = [token(jti="a"), token(jti="b", status="uploaded"),
              token(jti="c", republished=2, last=T0), token(jti="d", last=T0 + timedelta(hours=1))]
    assert due_for_redelivery(tokens, now=T0 + timedelta(minutes=4), policy=POLICY) == ["a", "c"]


def test_the_policy_refuses_a_zero_start_or_a_cap_below_it() -> None:
    with pytest.raises(ValueError, match="initial_s"):
        RedeliveryPolicy(initial_s=0)
    with pytest.raises(ValueError, match="max_s"):
        RedeliveryPolicy(initial_s=60, max_s=30)
    with pytest.raises(ValueError, match="negative"):
        POLICY.delay_s(-1)


def test_deployment_toml_redelivery_defaults_and_values() -> None:
    assert parse_deployment("", Path("d.toml")).redelivery.model_dump() == {
        "initial_s": 60, "max_s": 3600}
    section = parse_deployment("[redelivery]\ninitial_s = 2\nmax_s = 8\n",
                               Path("d.toml")).redelivery
    assert (section.initial_s, section.max_s) == (2, 8)


@pytest.mark.parametrize(("text", "message"), [
    ("initial_s = 0", "key 'redelivery.initial_s': Input should be greater than or equal to 1"),
    ("initial_s = 1.5", "key 'redelivery.initial_s': Input should be a valid integer"),
    ("initial_s = '60'", "key 'redelivery.initial_s': Input should be a valid integer"),
    ("max_s = 99999999", "key 'redelivery.max_s': Input should be less than or equal to"),
    ("initial_s = 600\nmax_s = 60", "max_s (60) must not be below initial_s (600)"),
    ("interval = 5", "unknown key 'redelivery.interval'"),
])
def test_deployment_toml_refuses_bad_redelivery_values(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_deployment(f"[redelivery]\n{text}\n", Path("/srv/d/deployment.toml"))
    assert message in str(caught.value)
    assert "/srv/d/deployment.toml" in str(caught.value)
