"""The review console's settings (docs/adr/0015-review-console.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ApprovalMode(StrEnum):
    """How the approve panel lets a reviewer approve.

    ``service``: the reviewer's signed-in session approves through the service (the
    trust root v1 path: the service's release keys sign). ``reviewer_command``: the
    panel shows the exact ``doorbell-review approve`` command the reviewer runs on their
    own machine with their own key (trust root v2, docs/adr/0013-trust-root-v2.md); the
    page never handles a reviewer's private key.
    """

    SERVICE = "service"
    REVIEWER_COMMAND = "reviewer_command"


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    idle_s: int = 15 * 60  # a session unused this long is gone
    absolute_s: int = 8 * 3600  # and any session this old
    sign_in_attempts: int = 10  # per client address per sign_in_window_s
    sign_in_window_s: int = 60
    page_size: int = 50
    approval: ApprovalMode | None = None  # None: by the trust root in force, per page
    review_command: str = "doorbell-review"

    def __post_init__(self) -> None:
        if min(self.idle_s, self.absolute_s, self.sign_in_attempts, self.sign_in_window_s,
               self.page_size) < 1:
            raise ValueError("console settings must be positive")


def approval_mode(reviewers_sign: bool) -> ApprovalMode:
    """`service` while the service signs approvals with its own review key (trust root
    v1); `reviewer_command` once reviewers sign on their own machines (trust root v2 in
    force, ADR 0013), which the console asks at every page (`Console.approval`)."""
    return ApprovalMode.REVIEWER_COMMAND if reviewers_sign else ApprovalMode.SERVICE
