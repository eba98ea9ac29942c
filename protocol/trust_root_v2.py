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

The document's types and invariants are in `protocol.trust_root_v2_document`; this
module is the public surface of both (`__all__`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from protocol import _schema as s
from protocol.errors import RejectionCode, TrustRootError
from protocol.keys import canonical_json
from protocol.timefmt import parse_time, require_aware
from protocol.trust_root import (
    BASES,
    ROOT_TYPE,
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
from protocol.trust_root_v2_document import (
    DEFAULT_RULES,
    ROOT_TYPE_V2,
    AnyTrustRoot,
    BasisRule,
    CourtKey,
    Reviewer,
    TrustRootV2,
)
from protocol.warrant import COURT_ID_RE

ROLES_V2: Final = ("root", "policy", "review", "court")
_SIGNED_KEYS: Final = frozenset(
    {"_type", "version", "expires", "issuer", "keys", "roles", "reviewers", "courts",
     "rules", "limits", "log"}
)  # fmt: skip


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
