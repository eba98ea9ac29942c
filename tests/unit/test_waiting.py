"""The tests' one wait-until helper (tests/fixtures/waiting.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.fixtures.waiting import wait_until


def test_it_returns_the_first_truthy_value_the_check_gave() -> None:
    answers = iter([None, 0, {}, {"state": "running"}, {"state": "later"}])
    assert wait_until("the state", lambda: next(answers), interval=0) == {"state": "running"}


def test_a_condition_that_never_holds_fails_naming_what_was_awaited() -> None:
    calls = itertools.count(1)
    with pytest.raises(AssertionError, match="waiting for the cloud's escrow-ack"):
        wait_until("the cloud's escrow-ack", lambda: next(calls) < 0, timeout=0.05,
                   interval=0.01)
    assert next(calls) > 2  # it polled again and again before giving up
