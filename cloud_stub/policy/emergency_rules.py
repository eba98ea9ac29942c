"""The rules of docs/policy.md for an ``emergency``-basis request (footage without a
warrant while someone is in danger now), each a small object with one ``check``. Rules
never read the clock or a file: ``ctx.now`` is the time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import ClassVar

from cloud_stub.policy.base import PolicyContext
from cloud_stub.policy.codes import Code
from cloud_stub.policy.requests import EmergencyRequest, Officer
from cloud_stub.policy.rule_helpers import in_hours, is_blank, violation

PLACEHOLDERS = frozenset(
    {"", "na", "n a", "none", "nil", "null", "tbd", "tba", "unknown", "emergency", "urgent",
     "exigent", "exigent circumstances", "see attached", "see above", "same", "same as above",
     "as above", "ongoing", "test", "xxx", "lorem ipsum", "redacted", "classified"}
)  # fmt: skip
"""Normalised texts that never justify an emergency disclosure."""


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold()).split())


def repeated_phrase(words: Sequence[str]) -> tuple[str, ...] | None:
    """The shortest phrase `words` is made of, said twice or more ("x x x", "help us help
    us help us"), or None when the text is not one phrase repeated."""
    n = len(words)
    for size in range(1, n // 2 + 1):
        if n % size == 0 and list(words) == list(words[:size]) * (n // size):
            return tuple(words[:size])
    return None


# --- emergency ------------------------------------------------------------------------------


EMERGENCY_JUSTIFICATION_FIELDS = ("danger", "persons_at_risk", "why_ongoing", "device_relevance")


class EmergencyJustification:
    """Each justification is present and says something: long enough in distinct words,
    not a placeholder, not one phrase repeated ("x x x ..."), and not a copy of another
    field."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.EMERGENCY_JUSTIFICATION_MISSING,
        Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
    )

    def __init__(self, *, min_chars: int, min_words: int) -> None:
        if min_chars < 1 or min_words < 1:
            raise ValueError("min_chars and min_words must be at least 1")
        self.min_chars = min_chars
        self.min_words = min_words

    def check(self, request: EmergencyRequest, ctx: PolicyContext) -> None:
        seen: dict[str, str] = {}
        for name in EMERGENCY_JUSTIFICATION_FIELDS:
            text: str | None = getattr(request, name)
            if text is None or not text.strip():
                raise violation(
                    Code.EMERGENCY_JUSTIFICATION_MISSING, f"{name}: required for an emergency"
                )
            norm = _normalise(text)
            if norm in PLACEHOLDERS:
                raise violation(
                    Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
                    f"{name}: {text.strip()!r:.40} is a placeholder, not a justification",
                )
            words = norm.split()
            phrase = repeated_phrase(words)
            if phrase is not None:
                raise violation(
                    Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
                    f"{name}: {' '.join(phrase)!r:.40} repeated is a placeholder, not a "
                    "justification",
                )
            if len(norm) < self.min_chars or len(set(words)) < self.min_words:
                raise violation(
                    Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
                    f"{name}: say it in at least {self.min_words} different words and "
                    f"{self.min_chars} characters",
                )
            if norm in seen:
                raise violation(
                    Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
                    f"{name} repeats {seen[norm]}: each field answers its own question",
                )
            seen[norm] = name


class EmergencyOfficers:
    """A certifying officer and a distinct supervisor, each with name, badge and contact."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.EMERGENCY_OFFICER_MISSING,
        Code.EMERGENCY_SUPERVISOR_NOT_INDEPENDENT,
    )

    @staticmethod
    def _complete(officer: Officer) -> bool:
        return not any(is_blank(v) for v in (officer.name, officer.badge, officer.contact))

    def check(self, request: EmergencyRequest, ctx: PolicyContext) -> None:
        officer, supervisor = request.certifying_officer, request.supervisor
        if officer is None or not self._complete(officer):
            raise violation(
                Code.EMERGENCY_OFFICER_MISSING, "certifying_officer: give name, badge and contact"
            )
        if supervisor is None or not self._complete(supervisor):
            raise violation(
                Code.EMERGENCY_OFFICER_MISSING, "supervisor: give name, badge and contact"
            )
        if _normalise(officer.badge) == _normalise(supervisor.badge) or _normalise(
            officer.name
        ) == _normalise(supervisor.name):
            raise violation(
                Code.EMERGENCY_SUPERVISOR_NOT_INDEPENDENT,
                "the supervisor must be another officer than the one certifying",
            )


class FollowUpDue:
    """The follow-up legal process (a warrant for what was disclosed) is due after now and
    within ``max_delay``; the transparency report flags it when it never arrives."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.EMERGENCY_FOLLOWUP_MISSING,
        Code.EMERGENCY_FOLLOWUP_OUT_OF_RANGE,
    )

    def __init__(self, *, max_delay: timedelta) -> None:
        if max_delay <= timedelta(0):
            raise ValueError("max_delay must be positive")
        self.max_delay = max_delay

    def check(self, request: EmergencyRequest, ctx: PolicyContext) -> None:
        due = request.followup_due
        if due is None:
            raise violation(
                Code.EMERGENCY_FOLLOWUP_MISSING,
                "give followup_due: when the follow-up legal process will be filed",
            )
        if due <= ctx.now or due - ctx.now > self.max_delay:
            raise violation(
                Code.EMERGENCY_FOLLOWUP_OUT_OF_RANGE,
                f"followup_due must fall within {in_hours(self.max_delay)} after now",
            )
