"""Trust root v2: separate policy, reviewer and court keys, and per-basis signing rules.

The document (docs/adr/0013-trust-root-v2.md, docs/protocol.md section 4)::

    {"signed": {"_type": "doorbell-root-v2", "version": N, "expires", "issuer", "keys",
                "roles": {"root": {"keyids", "threshold"}, "policy": {"keyids"},
                          "review": {"keyids"}, "court": {"keyids"}},
                "reviewers": {"<kid>": {"name", "org"}},
                "courts": {"<court id>": {"name", "keyid"}},
                "rules": {"<basis>": {"policy", "review", "review_orgs", "court"}},
                "limits": {...as v1...}, "log": null | {"policy": "<witness policy>"}},
     "signatures": [{"keyid", "sig"}]}

`load_any_trust_root` establishes initial trust in a root of either format;
`update_any_trust_root` applies the rotation rule of v1 (version + 1, a threshold of the
current and of the new root role, unexpired) across formats, and never back from v2 to
v1. Both are pure: bytes and a clock in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import _schema as s
from protocol.errors import RejectionCode, TrustRootError
from protocol.keys import canonical_json, key_id, public_key_hex
from protocol.timefmt import format_time, parse_time, require_aware
from protocol.trust_root import (
    BASES,
    DEFAULT_LIMITS,
    ROOT_TYPE,
    BasisLimits,
    Role,
    TrustRoot,
    check_expiry,
    check_size,
    check_threshold,
    fail,
    load_trust_root,
    parse_keyids,
    parse_keys,
    parse_limits,
    parse_role,
    parse_signatures,
    update_trust_root,
)
from protocol.warrant import COURT_ID_RE

ROOT_TYPE_V2: Final = "doorbell-root-v2"
ROLES_V2: Final = ("root", "policy", "review", "court")
MAX_LOG_POLICY_BYTES: Final = 16 * 1024
_LOG_POLICY_RE: Final = re.compile(r"[\x20-\x7e\n]*")
_SIGNED_KEYS: Final = frozenset(
    {"_type", "version", "expires", "issuer", "keys", "roles", "reviewers", "courts",
     "rules", "limits", "log"}
)  # fmt: skip


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
            "keys": {
                kid: {"keytype": "ed25519", "public": public_key_hex(key)}
                for kid, key in self.keys.items()
            },
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


@dataclass(frozen=True, slots=True)
class _ParsedV2:
    root: TrustRootV2
    body: bytes
    signatures: tuple[tuple[str, bytes], ...]


def _parse_rules(value: Any) -> dict[str, BasisRule]:
    rules = s.obj(value, "rules", frozenset(BASES))
    out = {}
    for basis in BASES:
        item = s.obj(
            rules[basis], f"rules.{basis}", frozenset({"policy", "review", "review_orgs", "court"})
        )
        court = item["court"]
        if not isinstance(court, bool):
            raise s.SchemaError(f"rules.{basis}.court must be true or false")
        out[basis] = BasisRule(
            policy=s.integer(item["policy"], f"rules.{basis}.policy", minimum=1, maximum=16),
            review=s.integer(item["review"], f"rules.{basis}.review", minimum=1, maximum=16),
            review_orgs=s.integer(
                item["review_orgs"], f"rules.{basis}.review_orgs", minimum=1, maximum=16
            ),
            court=court,
        )
    return out


def _parse_reviewers(value: Any, review_kids: list[str]) -> dict[str, Reviewer]:
    if not isinstance(value, dict) or set(value) != set(review_kids):
        raise s.SchemaError("reviewers must describe exactly the keys of the review role")
    out = {}
    for kid, entry in value.items():
        item = s.obj(entry, "reviewers entry", frozenset({"name", "org"}))
        out[kid] = Reviewer(
            name=s.string(item["name"], "reviewers.name", max_len=128),
            org=s.string(item["org"], "reviewers.org", max_len=128),
        )
    return out


def _parse_courts(value: Any, court_kids: list[str]) -> dict[str, CourtKey]:
    if not isinstance(value, dict):
        raise s.SchemaError("courts must be an object")
    out = {}
    for court_id, entry in value.items():
        if COURT_ID_RE.fullmatch(court_id) is None:
            raise s.SchemaError(f"court id {court_id!r:.40} is not a court id")
        item = s.obj(entry, "courts entry", frozenset({"name", "keyid"}))
        out[court_id] = CourtKey(
            name=s.string(item["name"], "courts.name", max_len=200),
            keyid=s.hex64(item["keyid"], "courts.keyid"),
        )
    used = sorted(court.keyid for court in out.values())
    if used != sorted(court_kids):
        raise s.SchemaError("courts must use each key of the court role exactly once")
    return out


def _parse_log(value: Any) -> str | None:
    if value is None:
        return None
    item = s.obj(value, "log", frozenset({"policy"}))
    text = item["policy"]
    if not isinstance(text, str):
        raise s.SchemaError("log.policy must be a string")
    return text


def _parse_v2(data: bytes) -> _ParsedV2:
    check_size(data)
    try:
        doc = s.obj(s.loads_strict(data), "trust root", frozenset({"signed", "signatures"}))
        signed = s.obj(doc["signed"], "signed", _SIGNED_KEYS)
        if signed["_type"] != ROOT_TYPE_V2:
            raise s.SchemaError(f"_type must be {ROOT_TYPE_V2!r}")
        try:
            expires = parse_time(signed["expires"])
        except ValueError as exc:
            raise s.SchemaError(f"expires: {exc}") from None
        keys = parse_keys(signed["keys"])
        roles = s.obj(signed["roles"], "roles", frozenset(ROLES_V2))
        review_kids = parse_keyids(s.obj(roles["review"], "roles.review", frozenset({"keyids"}))[
            "keyids"], "review", keys)
        court_kids = parse_keyids(s.obj(roles["court"], "roles.court", frozenset({"keyids"}))[
            "keyids"], "court", keys)
        policy_kids = parse_keyids(s.obj(roles["policy"], "roles.policy", frozenset({"keyids"}))[
            "keyids"], "policy", keys)
        root = TrustRootV2(
            version=s.integer(signed["version"], "version", minimum=1),
            expires=expires,
            issuer=s.string(signed["issuer"], "issuer", max_len=128),
            keys=MappingProxyType(keys),
            root_role=parse_role(roles["root"], "root", keys),
            policy_keyids=frozenset(policy_kids),
            reviewers=MappingProxyType(_parse_reviewers(signed["reviewers"], review_kids)),
            courts=MappingProxyType(_parse_courts(signed["courts"], court_kids)),
            rules=MappingProxyType(_parse_rules(signed["rules"])),
            limits=MappingProxyType(parse_limits(signed["limits"])),
            log_policy=_parse_log(signed["log"]),
        )
        sigs = parse_signatures(doc["signatures"])
        body = canonical_json(signed)
    except s.SchemaError as exc:
        raise fail(RejectionCode.malformed, str(exc)) from None
    except ValueError as exc:  # a dataclass invariant
        raise fail(RejectionCode.malformed, str(exc)) from None
    return _ParsedV2(root=root, body=body, signatures=sigs)


def parse_unsigned_v2(signed: bytes) -> TrustRootV2:
    """A v2 ``signed`` part on its own (a draft before the root keys sign it).

    Checks the schema only; establishes no trust. Raises TrustRootError(malformed).
    """
    try:
        inner = s.loads_strict(signed)
    except s.SchemaError as exc:
        raise fail(RejectionCode.malformed, str(exc)) from None
    return _parse_v2(canonical_json({"signed": inner, "signatures": []})).root


def _peek_type(data: bytes) -> str | None:
    """The `_type` of a root document, read only to choose its parser."""
    check_size(data)
    try:
        doc = s.loads_strict(data)
    except s.SchemaError as exc:
        raise fail(RejectionCode.malformed, str(exc)) from None
    signed = doc.get("signed") if isinstance(doc, dict) else None
    kind = signed.get("_type") if isinstance(signed, dict) else None
    return kind if isinstance(kind, str) else None


def load_trust_root_v2(data: bytes, *, now: datetime) -> TrustRootV2:
    """Initial trust in a v2 root: a threshold of its own root role, unexpired.

    Raises TrustRootError (oversized, malformed, bad_signature, below_threshold,
    root_expired).
    """
    require_aware("now", now)
    parsed = _parse_v2(data)
    root = parsed.root
    check_threshold(parsed, root.root_role, root.keys, "its own")
    check_expiry(root.version, root.expires, now)
    return root


def load_any_trust_root(data: bytes, *, now: datetime) -> AnyTrustRoot:
    """Initial trust in a root of either format, chosen by its ``_type``."""
    if _peek_type(data) == ROOT_TYPE_V2:
        return load_trust_root_v2(data, now=now)
    return load_trust_root(data, now=now)


def update_any_trust_root(current: AnyTrustRoot, data: bytes, *, now: datetime
                          ) -> AnyTrustRoot:
    """Accept the successor of `current`, of either format (TUF's root rotation rule).

    Version exactly `current.version + 1`; a threshold of valid signatures by the current
    root role and by the new one over the new document; unexpired at `now`. A v1 document
    after a v2 root is refused (`bad_version`): a device never goes back to v1 rules.
    Raises TrustRootError (oversized, malformed, bad_version, bad_signature,
    below_threshold, root_expired).
    """
    require_aware("now", now)
    kind = _peek_type(data)
    if kind != ROOT_TYPE_V2:
        if isinstance(current, TrustRootV2):
            if kind == ROOT_TYPE:
                raise fail(RejectionCode.bad_version,
                           "a v1 trust root cannot follow a v2 one (no downgrade)")
            raise fail(RejectionCode.malformed, f"_type must be {ROOT_TYPE_V2!r}")
        return update_trust_root(current, data, now=now)
    parsed = _parse_v2(data)
    new = parsed.root
    if new.version != current.version + 1:
        raise fail(
            RejectionCode.bad_version,
            f"new trust root has version {new.version}, expected exactly {current.version + 1}",
        )
    check_threshold(parsed, current.root_role, current.keys, "the current")
    check_threshold(parsed, new.root_role, new.keys, "the new")
    check_expiry(new.version, new.expires, now)
    return new


__all__ = [
    "DEFAULT_RULES",
    "ROOT_TYPE_V2",
    "AnyTrustRoot",
    "BasisRule",
    "CourtKey",
    "Reviewer",
    "TrustRootError",
    "TrustRootV2",
    "load_any_trust_root",
    "load_trust_root_v2",
    "parse_unsigned_v2",
    "update_any_trust_root",
]
