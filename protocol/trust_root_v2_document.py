"""Trust root v2, the document: its keys and roles, reviewers, courts, per-basis rules
and limits, the invariants every v2 root holds, and its ``signed`` part as JSON
(docs/adr/0013-trust-root-v2.md, docs/protocol.md section 4).

Parsing a document and deciding whether to trust it is `protocol.trust_root_v2`, the
public surface of both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.keys import key_id
from protocol.timefmt import format_time, require_aware
from protocol.trust_root import (
    BASES,
    DEFAULT_LIMITS,
    BasisLimits,
    Role,
    TrustRoot,
    keys_to_json,
)
from protocol.warrant import COURT_ID_RE

ROOT_TYPE_V2: Final = "doorbell-root-v2"
MAX_LOG_POLICY_BYTES: Final = 16 * 1024
_LOG_POLICY_RE: Final = re.compile(r"[\x20-\x7e\n]*")


@dataclass(frozen=True, slots=True)
class Reviewer:
    """A human reviewer's key: who they are and for which organisation they sign."""

    name: str
    org: str


@dataclass(frozen=True, slots=True)
class CourtKey:
    """A court that may sign warrant statements, and its key id."""

    name: str
    keyid: str


@dataclass(frozen=True, slots=True)
class BasisRule:
    """Which signatures a token of one basis needs."""

    policy: int  # distinct valid policy signatures
    review: int  # distinct valid reviewer signatures
    review_orgs: int  # distinct organisations among those reviewers
    court: bool  # a court-signed warrant statement in the `warrant` claim

    def __post_init__(self) -> None:
        if self.policy < 1 or self.review < 1 or not 1 <= self.review_orgs <= self.review:
            raise ValueError(
                "a rule needs policy >= 1, review >= 1 and 1 <= review_orgs <= review"
            )


DEFAULT_RULES: Final[Mapping[str, BasisRule]] = MappingProxyType(
    {
        "warrant": BasisRule(policy=1, review=1, review_orgs=1, court=True),
        "emergency": BasisRule(policy=1, review=2, review_orgs=2, court=False),
        "preservation": BasisRule(policy=1, review=1, review_orgs=1, court=False),
    }
)


@dataclass(frozen=True, slots=True)
class TrustRootV2:
    """A verified v2 trust root. Construct one directly only to sign it."""

    version: int
    expires: datetime
    issuer: str
    keys: Mapping[str, Ed25519PublicKey]
    root_role: Role
    policy_keyids: frozenset[str]
    reviewers: Mapping[str, Reviewer]  # kid -> reviewer; the `review` role
    courts: Mapping[str, CourtKey]  # court id -> court; the `court` role
    rules: Mapping[str, BasisRule] = field(default_factory=lambda: DEFAULT_RULES)
    limits: Mapping[str, BasisLimits] = field(default_factory=lambda: DEFAULT_LIMITS)
    log_policy: str | None = None

    def __post_init__(self) -> None:
        require_aware("expires", self.expires)
        if self.version < 1:
            raise ValueError("version starts at 1")
        if set(self.rules) != set(BASES) or set(self.limits) != set(BASES):
            raise ValueError(f"rules and limits must name exactly {', '.join(BASES)}")
        if not self.rules["warrant"].court:
            raise ValueError("the warrant rule must require a court")
        if not self.policy_keyids:
            raise ValueError("the policy role needs at least one key")
        for kid, key in self.keys.items():
            if key_id(key) != kid:
                raise ValueError(f"key id {kid[:16]}... is not the sha256 of its key")
        court_kids = [court.keyid for court in self.courts.values()]
        if len(set(court_kids)) != len(court_kids):
            raise ValueError("two courts share one key")
        groups = (self.root_role.keyids, self.policy_keyids, set(self.reviewers), set(court_kids))
        seen: set[str] = set()
        for group in groups:
            unknown = set(group) - set(self.keys)
            if unknown:
                raise ValueError(f"a role names keys not in the root: {sorted(unknown)}")
            if seen & set(group):
                raise ValueError("a key belongs to more than one role")
            seen |= set(group)
        for court_id in self.courts:
            if COURT_ID_RE.fullmatch(court_id) is None:
                raise ValueError(f"court id {court_id!r:.40} is not a court id")
        if self.log_policy is not None:
            check_log_policy(self.log_policy)

    @property
    def court_keyids(self) -> frozenset[str]:
        return frozenset(court.keyid for court in self.courts.values())

    def court_key(self, court_id: str) -> Ed25519PublicKey | None:
        court = self.courts.get(court_id)
        return None if court is None else self.keys[court.keyid]

    def to_signed(self) -> dict[str, Any]:
        """The ``signed`` part as a JSON value."""
        return {
            "_type": ROOT_TYPE_V2,
            "version": self.version,
            "expires": format_time(self.expires.replace(microsecond=0)),
            "issuer": self.issuer,
            "keys": keys_to_json(self.keys),
            "roles": {
                "root": {
                    "keyids": sorted(self.root_role.keyids),
                    "threshold": self.root_role.threshold,
                },
                "policy": {"keyids": sorted(self.policy_keyids)},
                "review": {"keyids": sorted(self.reviewers)},
                "court": {"keyids": sorted(self.court_keyids)},
            },
            "reviewers": {
                kid: {"name": r.name, "org": r.org} for kid, r in self.reviewers.items()
            },
            "courts": {cid: {"name": c.name, "keyid": c.keyid} for cid, c in self.courts.items()},
            "rules": {
                basis: {
                    "policy": r.policy,
                    "review": r.review,
                    "review_orgs": r.review_orgs,
                    "court": r.court,
                }
                for basis, r in self.rules.items()
            },
            "limits": {
                basis: {"max_window_s": lim.max_window_s, "max_token_life_s": lim.max_token_life_s}
                for basis, lim in self.limits.items()
            },
            "log": None if self.log_policy is None else {"policy": self.log_policy},
        }


AnyTrustRoot = TrustRoot | TrustRootV2


def check_log_policy(text: str) -> None:
    """The reserved witness policy: at most 16 KiB of printable ASCII lines.

    Its meaning belongs to the release log (`protocol/tlog/`). Raises ValueError.
    """
    if len(text) > MAX_LOG_POLICY_BYTES or _LOG_POLICY_RE.fullmatch(text) is None:
        raise ValueError(
            f"log.policy must be at most {MAX_LOG_POLICY_BYTES} bytes of printable ASCII lines"
        )
