"""The trust root: which keys may sign releases, how many must, and the release limits.

A signed JSON document in the spirit of TUF's root metadata::

    {"signed": {"_type": "doorbell-root", "version": 1, "expires": "...Z",
                "issuer": "cloud-stub",
                "keys": {"<kid>": {"keytype": "ed25519", "public": "<hex>"}},
                "roles": {"root": {"keyids": [...], "threshold": 2},
                          "release": {"keyids": [...], "threshold": 2}},
                "limits": {"warrant": {"max_window_s": ..., "max_token_life_s": ...},
                           "emergency": {...}, "preservation": {...}}},
     "signatures": [{"keyid": "<kid>", "sig": "<hex Ed25519 over canonical_json(signed)>"}]}

`load_trust_root` establishes initial trust (the document must carry a threshold of
signatures of its own root role and be unexpired); `update_trust_root` accepts a
successor only when its version is exactly one higher and it is signed by a threshold of
the old root keys and of its own. Both are pure: bytes and a clock in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import _schema as s
from protocol.errors import KeyFormatError, RejectionCode, TrustRootError
from protocol.keys import canonical_json, key_id, public_key_from_hex, public_key_hex
from protocol.timefmt import format_time, parse_time, require_aware

ROOT_TYPE: Final = "doorbell-root"
MAX_ROOT_BYTES: Final = 64 * 1024  # a root with dozens of keys is a few KiB
MAX_KEYS: Final = 64
MAX_SIGNATURES: Final = 64
BASES: Final = ("warrant", "emergency", "preservation")
ROLES: Final = ("root", "release")
_HOUR: Final = 3600


@dataclass(frozen=True, slots=True)
class BasisLimits:
    """Upper bounds for one legal basis, in seconds."""

    max_window_s: int  # window.end - window.start
    max_token_life_s: int  # exp - iat

    def __post_init__(self) -> None:
        if self.max_window_s <= 0 or self.max_token_life_s <= 0:
            raise ValueError("basis limits must be positive numbers of seconds")


@dataclass(frozen=True, slots=True)
class Role:
    """Key ids trusted for a role and how many distinct ones must sign."""

    keyids: frozenset[str]
    threshold: int

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= len(self.keyids):
            raise ValueError(
                f"threshold {self.threshold} must be between 1 and the {len(self.keyids)} keys"
            )


DEFAULT_LIMITS: Final[Mapping[str, BasisLimits]] = MappingProxyType(
    {
        "warrant": BasisLimits(max_window_s=72 * _HOUR, max_token_life_s=24 * _HOUR),
        "emergency": BasisLimits(max_window_s=12 * _HOUR, max_token_life_s=1 * _HOUR),
        "preservation": BasisLimits(max_window_s=7 * 24 * _HOUR, max_token_life_s=24 * _HOUR),
    }
)


@dataclass(frozen=True, slots=True)
class TrustRoot:
    """A verified trust root. Construct one directly only to sign it."""

    version: int
    expires: datetime
    issuer: str
    keys: Mapping[str, Ed25519PublicKey]
    roles: Mapping[str, Role]
    limits: Mapping[str, BasisLimits] = field(default_factory=lambda: DEFAULT_LIMITS)

    def __post_init__(self) -> None:
        require_aware("expires", self.expires)
        if self.version < 1:
            raise ValueError("version starts at 1")
        if set(self.roles) != set(ROLES):
            raise ValueError(f"roles must be exactly {', '.join(ROLES)}")
        if set(self.limits) != set(BASES):
            raise ValueError(f"limits must name exactly {', '.join(BASES)}")
        for kid, key in self.keys.items():
            if key_id(key) != kid:
                raise ValueError(f"key id {kid[:16]}... is not the sha256 of its key")
        for name, role in self.roles.items():
            unknown = role.keyids - set(self.keys)
            if unknown:
                raise ValueError(f"role {name} names keys not in the root: {sorted(unknown)}")

    @property
    def root_role(self) -> Role:
        """The keys that sign trust roots (both formats have one)."""
        return self.roles["root"]

    def role_keys(self, role: str) -> Mapping[str, Ed25519PublicKey]:
        """kid -> public key of one role."""
        return {kid: self.keys[kid] for kid in self.roles[role].keyids}

    def to_signed(self) -> dict[str, Any]:
        """The ``signed`` part as a JSON value."""
        return {
            "_type": ROOT_TYPE,
            "version": self.version,
            "expires": format_time(self.expires.replace(microsecond=0)),
            "issuer": self.issuer,
            "keys": keys_to_json(self.keys),
            "roles": {
                name: {"keyids": sorted(role.keyids), "threshold": role.threshold}
                for name, role in self.roles.items()
            },
            "limits": {
                basis: {"max_window_s": lim.max_window_s, "max_token_life_s": lim.max_token_life_s}
                for basis, lim in self.limits.items()
            },
        }


class SignableRoot(Protocol):
    """A trust root of either format (v1 here, v2 in `protocol.trust_root_v2`)."""

    def to_signed(self) -> dict[str, Any]: ...


def sign_trust_root(root: SignableRoot, signers: Sequence[Ed25519PrivateKey]) -> bytes:
    """Serialize and sign a root with each signer (normally the root role's keys).

    The output is canonical JSON so that the same root and signers give the same bytes.
    Raises ValueError when two signers are the same key.
    """
    body = canonical_json(root.to_signed())
    signatures = []
    seen: set[str] = set()
    for signer in signers:
        kid = key_id(signer.public_key())
        if kid in seen:
            raise ValueError(f"signer {kid[:16]}... given twice")
        seen.add(kid)
        signatures.append({"keyid": kid, "sig": signer.sign(body).hex()})
    return canonical_json({"signed": root.to_signed(), "signatures": signatures})


def fail(code: RejectionCode, detail: str) -> TrustRootError:
    return TrustRootError(code, detail)


class SignedDocument(Protocol):
    """What the signature checks need of a parsed root of either format."""

    @property
    def body(self) -> bytes: ...  # canonical_json(signed): what the signatures cover

    @property
    def signatures(self) -> tuple[tuple[str, bytes], ...]: ...


@dataclass(frozen=True, slots=True)
class _Parsed:
    root: TrustRoot
    body: bytes  # canonical_json(signed): what the signatures cover
    signatures: tuple[tuple[str, bytes], ...]


def parse_limits(value: Any) -> dict[str, BasisLimits]:
    limits = s.obj(value, "limits", frozenset(BASES))
    out = {}
    for basis in BASES:
        item = s.obj(
            limits[basis], f"limits.{basis}", frozenset({"max_window_s", "max_token_life_s"})
        )
        out[basis] = BasisLimits(
            max_window_s=s.integer(
                item["max_window_s"],
                f"limits.{basis}.max_window_s",
                minimum=1,
                maximum=366 * 24 * _HOUR,
            ),
            max_token_life_s=s.integer(
                item["max_token_life_s"],
                f"limits.{basis}.max_token_life_s",
                minimum=1,
                maximum=366 * 24 * _HOUR,
            ),
        )
    return out


def check_size(data: bytes) -> None:
    """Raises TrustRootError (malformed, oversized) before any parsing."""
    if not isinstance(data, bytes):
        raise fail(RejectionCode.malformed, "a trust root must be given as bytes")
    if len(data) > MAX_ROOT_BYTES:
        raise fail(
            RejectionCode.oversized, f"trust root is {len(data)} bytes, the cap is {MAX_ROOT_BYTES}"
        )


def keys_to_json(keys: Mapping[str, Ed25519PublicKey]) -> dict[str, dict[str, str]]:
    """The ``keys`` object `parse_keys` reads: kid -> {keytype, public hex}."""
    return {kid: {"keytype": "ed25519", "public": public_key_hex(key)}
            for kid, key in keys.items()}


def parse_keys(raw_keys: Any) -> dict[str, Ed25519PublicKey]:
    """The ``keys`` object: kid -> Ed25519 key, each kid the sha256 of its key.

    Raises SchemaError.
    """
    if not isinstance(raw_keys, dict) or len(raw_keys) > MAX_KEYS:
        raise s.SchemaError(f"keys must be an object of at most {MAX_KEYS} keys")
    keys: dict[str, Ed25519PublicKey] = {}
    for kid, entry in raw_keys.items():
        item = s.obj(entry, "keys entry", frozenset({"keytype", "public"}))
        if item["keytype"] != "ed25519":
            raise s.SchemaError("keytype must be 'ed25519'")
        try:
            key = public_key_from_hex(item["public"])
        except KeyFormatError as exc:
            raise s.SchemaError(f"keys entry: {exc}") from None
        if key_id(key) != kid:
            raise s.SchemaError(f"key id {str(kid)[:16]!r} is not the sha256 of its key")
        keys[kid] = key
    return keys


def parse_signatures(value: Any) -> tuple[tuple[str, bytes], ...]:
    """The ``signatures`` array as (kid, raw signature) pairs. Raises SchemaError."""
    raw_sigs = s.array(value, "signatures", max_len=MAX_SIGNATURES)
    sigs: list[tuple[str, bytes]] = []
    for entry in raw_sigs:
        item = s.obj(entry, "signature", frozenset({"keyid", "sig"}))
        kid = s.hex64(item["keyid"], "signature keyid")
        sig_hex = item["sig"]
        if not isinstance(sig_hex, str) or len(sig_hex) != 128:
            raise s.SchemaError("sig must be 128 hex characters")
        try:
            sigs.append((kid, bytes.fromhex(sig_hex)))
        except ValueError:
            raise s.SchemaError("sig must be 128 hex characters") from None
    return tuple(sigs)


def parse_role(value: Any, name: str, keys: Mapping[str, Ed25519PublicKey]) -> Role:
    """A role with ``keyids`` and ``threshold``. Raises SchemaError."""
    item = s.obj(value, f"roles.{name}", frozenset({"keyids", "threshold"}))
    keyids = parse_keyids(item["keyids"], name, keys)
    threshold = s.integer(
        item["threshold"], f"roles.{name}.threshold", minimum=1, maximum=len(keyids)
    )
    return Role(keyids=frozenset(keyids), threshold=threshold)


def parse_keyids(value: Any, name: str, keys: Mapping[str, Ed25519PublicKey]) -> list[str]:
    """A role's ``keyids``: distinct kids of `keys`. Raises SchemaError."""
    keyids = s.array(value, f"roles.{name}.keyids", max_len=MAX_KEYS)
    for kid in keyids:
        if not isinstance(kid, str) or kid not in keys:
            raise s.SchemaError(f"roles.{name} names a key that is not in keys")
    if len(set(keyids)) != len(keyids):
        raise s.SchemaError(f"roles.{name}.keyids repeats a key")
    return keyids


def _parse(data: bytes) -> _Parsed:
    check_size(data)
    try:
        doc = s.obj(s.loads_strict(data), "trust root", frozenset({"signed", "signatures"}))
        signed = s.obj(
            doc["signed"],
            "signed",
            frozenset({"_type", "version", "expires", "issuer", "keys", "roles", "limits"}),
        )
        if signed["_type"] != ROOT_TYPE:
            raise s.SchemaError(f"_type must be {ROOT_TYPE!r}")
        version = s.integer(signed["version"], "version", minimum=1)
        try:
            expires = parse_time(signed["expires"])
        except ValueError as exc:
            raise s.SchemaError(f"expires: {exc}") from None
        issuer = s.string(signed["issuer"], "issuer", max_len=128)
        keys = parse_keys(signed["keys"])
        raw_roles = s.obj(signed["roles"], "roles", frozenset(ROLES))
        roles: dict[str, Role] = {}
        for name in ROLES:
            roles[name] = parse_role(raw_roles[name], name, keys)
        limits = parse_limits(signed["limits"])
        sigs = parse_signatures(doc["signatures"])
        root = TrustRoot(
            version=version,
            expires=expires,
            issuer=issuer,
            keys=MappingProxyType(keys),
            roles=MappingProxyType(roles),
            limits=MappingProxyType(limits),
        )
        body = canonical_json(signed)
    except s.SchemaError as exc:
        raise fail(RejectionCode.malformed, str(exc)) from None
    except ValueError as exc:  # a dataclass invariant
        raise fail(RejectionCode.malformed, str(exc)) from None
    return _Parsed(root=root, body=body, signatures=tuple(sigs))


def check_threshold(
    parsed: SignedDocument, role: Role, keys: Mapping[str, Ed25519PublicKey], whose: str
) -> None:
    """Require `role.threshold` valid signatures over the body from distinct role keys.

    A signature under a kid of the role that does not verify is an attack (or corruption)
    and rejects the document; signatures from other keys are ignored and do not count.
    """
    valid: set[str] = set()
    for kid, sig in parsed.signatures:
        if kid not in role.keyids:
            continue
        try:
            keys[kid].verify(sig, parsed.body)
        except InvalidSignature:
            raise fail(
                RejectionCode.bad_signature,
                f"signature by {whose} root key {kid[:16]}... does not verify",
            ) from None
        valid.add(kid)
    if len(valid) < role.threshold:
        raise fail(
            RejectionCode.below_threshold,
            f"{len(valid)} valid signature(s) of {whose} root keys, {role.threshold} required",
        )


def check_expiry(version: int, expires: datetime, now: datetime) -> None:
    """Raises TrustRootError(root_expired) when `now` is at or past `expires`."""
    if now >= expires:
        raise fail(
            RejectionCode.root_expired,
            f"trust root version {version} expired at {format_time(expires)}",
        )


def load_trust_root(data: bytes, *, now: datetime) -> TrustRoot:
    """Establish initial trust in a root delivered out of band (the device bundle).

    Requires a threshold of valid signatures by its own root role, and that it has not
    expired at `now`. Raises TrustRootError (oversized, malformed, bad_signature,
    below_threshold, root_expired).
    """
    require_aware("now", now)
    parsed = _parse(data)
    root = parsed.root
    check_threshold(parsed, root.roles["root"], root.keys, "its own")
    check_expiry(root.version, root.expires, now)
    return root


def update_trust_root(current: TrustRoot, data: bytes, *, now: datetime) -> TrustRoot:
    """Accept the successor of `current` (TUF's root rotation rule).

    The new version must be exactly `current.version + 1`, signed by a threshold of the
    current root role and by a threshold of its own root role, and unexpired at `now`.
    Raises TrustRootError (oversized, malformed, bad_version, bad_signature,
    below_threshold, root_expired).
    """
    require_aware("now", now)
    parsed = _parse(data)
    new = parsed.root
    if new.version != current.version + 1:
        raise fail(
            RejectionCode.bad_version,
            f"new trust root has version {new.version}, expected exactly {current.version + 1}",
        )
    check_threshold(parsed, current.roles["root"], current.keys, "the current")
    check_threshold(parsed, new.roles["root"], new.keys, "the new")
    check_expiry(new.version, new.expires, now)
    return new
