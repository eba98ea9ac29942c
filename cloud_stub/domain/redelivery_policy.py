"""When to publish a token again that the broker took but no device result answered.

A QoS 1 PUBACK only says the broker has the token. A broker that loses its queue for an
offline device (a crash between saves, a restore from backup, an expired session) never
delivers it, and without this the release would silently never happen (ADR 0011). So a
token in the state ``published`` (no result, no evidence yet) is published again after
``initial_s``, then after doubling delays up to ``max_s``, and never once ``exp`` has
come. Any device result (``deferred`` included: the device holds the token durably) or
accepted evidence moves the token out of ``published`` and ends the re-publishing; a
device answers an identical re-delivery by re-sending the result it already has.

Pure policy: token facts and the clock in, the jtis to publish now out. The times of
earlier publishes come from the audit log (``token.published`` / ``token.republished``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cloud_stub.domain.lifecycle import AWAITING_RESULT

MAX_DOUBLINGS = 40  # 2**40 s is beyond any cap; bounds the exponent


@dataclass(frozen=True, slots=True)
class RedeliveryPolicy:
    """Backoff in whole seconds: the n-th re-publish (n = 1, 2, ...) comes
    ``min(initial_s * 2**(n-1), max_s)`` after the publish before it."""

    initial_s: int = 60
    max_s: int = 3600

    def __post_init__(self) -> None:
        if self.initial_s < 1:
            raise ValueError(f"initial_s must be at least 1 s, not {self.initial_s}")
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s}) must not be below initial_s "
                             f"({self.initial_s})")

    def delay_s(self, republished: int) -> int:
        """Seconds to wait after the last publish when `republished` re-publishes were
        made already."""
        if republished < 0:
            raise ValueError("republished must not be negative")
        doublings: int = min(republished, MAX_DOUBLINGS)
        return min(self.initial_s << doublings, self.max_s)


@dataclass(frozen=True, slots=True)
class PublishedToken:
    """What the policy needs of one token: its row's status and ``exp``, and from the
    audit log the time of its last publish and how many re-publishes it had."""

    jti: str
    status: str
    expires_at: datetime
    last_published_at: datetime
    republished: int = 0


def next_redelivery(token: PublishedToken, policy: RedeliveryPolicy) -> datetime | None:
    """When `token` is due to be published again, or None: it is not awaiting a result,
    or the next time would be at or after its ``exp`` (a device refuses it then)."""
    if token.status != AWAITING_RESULT:
        return None
    due = token.last_published_at + timedelta(seconds=policy.delay_s(token.republished))
    return due if due < token.expires_at else None


def due_for_redelivery(tokens: Iterable[PublishedToken], *, now: datetime,
                       policy: RedeliveryPolicy) -> list[str]:
    """The jtis to publish again at `now`, in the order given."""
    due = []
    for token in tokens:
        at = next_redelivery(token, policy)
        if at is not None and at <= now < token.expires_at:
            due.append(token.jti)
    return due
