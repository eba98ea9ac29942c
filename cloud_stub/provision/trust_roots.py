"""Preparing, signing and listing trust roots (docs/adr/0013-trust-root-v2.md section 6).

The service host prepares the next root as an unsigned draft
(``cloud/trust-root.draft.json``): `cloud-stub reviewers add --public-key`,
`reviewers remove-key` and `courts add` edit it. The root keys never live on the
service host: `cloud-stub root sign --keys DIR`, run where they are, signs the draft,
checks it by the device's own rotation rule against the current root, and writes it to
``cloud/trust-roots/<version>.json`` and ``cloud/trust-root.json``; the court registry
(``cloud/courts.json``) is rewritten from its ``courts``. The service publishes the
chain to every device (`cloud_stub.mqtt`).

The first v2 draft after a v1 root keeps the v1 root keys, takes the v1 ``policy``
key as the policy role and the court registry's courts; v1's ``review`` key, which the
service held, is left out.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_stub.errors import ConfigError
from cloud_stub.policy.courts import load_court_registry
from cloud_stub.provision.keys import make_dir, write_atomic
from protocol.bundle import DeploymentLayout
from protocol.errors import KeyFormatError, TrustRootError
from protocol.keys import canonical_json, key_id, private_key_from_pem, public_key_from_hex
from protocol.root_chain import MAX_ROOTS
from protocol.trust_root import MAX_ROOT_BYTES, TrustRoot, sign_trust_root
from protocol.trust_root_v2 import (
    DEFAULT_RULES,
    AnyTrustRoot,
    CourtKey,
    Reviewer,
    TrustRootV2,
    load_any_trust_root,
    parse_unsigned_v2,
    update_any_trust_root,
)

DRAFT_LIFETIME = timedelta(days=365)


def current_root(layout: DeploymentLayout, now: datetime) -> AnyTrustRoot:
    """The deployment's trust root in force. Raises ConfigError."""
    path = layout.trust_root
    try:
        return load_any_trust_root(path.read_bytes(), now=now)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the trust root: {exc.strerror}") from exc
    except TrustRootError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _policy_kid(layout: DeploymentLayout) -> str:
    pub = layout.signer_key("policy").with_suffix(".pub")
    try:
        key = public_key_from_hex(pub.read_text(encoding="ascii").strip())
    except (OSError, KeyFormatError) as exc:
        raise ConfigError(f"{pub}: cannot read the policy public key: {exc}") from exc
    return key_id(key)


def _from_v1(layout: DeploymentLayout, root: TrustRoot, now: datetime) -> TrustRootV2:
    policy_kid = _policy_kid(layout)
    if policy_kid not in root.roles["release"].keyids:
        raise ConfigError("the policy key is not a release key of the v1 trust root")
    registry = load_court_registry(layout.court_registry)
    keys = {kid: root.keys[kid] for kid in root.root_role.keyids}
    keys[policy_kid] = root.keys[policy_kid]
    courts = {}
    for court_id, court in registry.items():
        kid = key_id(court.public_key)
        keys[kid] = court.public_key
        courts[court_id] = CourtKey(name=court.name, keyid=kid)
    return TrustRootV2(
        version=root.version + 1,
        expires=(now + DRAFT_LIFETIME).replace(microsecond=0),
        issuer=root.issuer,
        keys=MappingProxyType(keys),
        root_role=root.root_role,
        policy_keyids=frozenset({policy_kid}),
        reviewers=MappingProxyType({}),
        courts=MappingProxyType(courts),
        rules=DEFAULT_RULES,
        limits=root.limits,
    )


def load_draft(layout: DeploymentLayout, now: datetime) -> TrustRootV2:
    """The draft of the next root; a fresh one from the current root when none exists.

    Raises ConfigError.
    """
    path = layout.trust_root_draft
    if path.exists():
        try:
            return parse_unsigned_v2(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the draft: {exc.strerror}") from exc
        except TrustRootError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    current = current_root(layout, now)
    if isinstance(current, TrustRoot):
        return _from_v1(layout, current, now)
    return dataclasses.replace(
        current,
        version=current.version + 1,
        expires=(now + DRAFT_LIFETIME).replace(microsecond=0),
    )


def save_draft(layout: DeploymentLayout, draft: TrustRootV2) -> Path:
    data = json.dumps(draft.to_signed(), indent=1, sort_keys=True).encode() + b"\n"
    write_atomic(layout.trust_root_draft, data, mode=0o644, overwrite=True)
    return layout.trust_root_draft


def _without_unused_keys(root: TrustRootV2) -> TrustRootV2:
    used = (set(root.root_role.keyids) | root.policy_keyids | set(root.reviewers)
            | root.court_keyids)
    return dataclasses.replace(
        root, keys=MappingProxyType({k: v for k, v in root.keys.items() if k in used})
    )


def _public_key_arg(public_hex: str) -> tuple[str, Ed25519PublicKey]:
    """The key id and key of a ``--public-key`` (64 hex). Raises ConfigError."""
    try:
        key = public_key_from_hex(public_hex.strip())
    except KeyFormatError as exc:
        raise ConfigError(f"--public-key: {exc}") from exc
    return key_id(key), key


def add_reviewer(draft: TrustRootV2, name: str, org: str, public_hex: str) -> TrustRootV2:
    """The draft with reviewer `name` of `org` holding `public_hex`. Raises ConfigError."""
    kid, key = _public_key_arg(public_hex)
    if kid in draft.keys and kid not in draft.reviewers:
        raise ConfigError("this key already has another role in the trust root")
    reviewers = {k: r for k, r in draft.reviewers.items() if r.name != name}
    reviewers[kid] = Reviewer(name=name, org=org)
    keys = dict(draft.keys)
    keys[kid] = key
    try:
        return _without_unused_keys(dataclasses.replace(
            draft, keys=MappingProxyType(keys), reviewers=MappingProxyType(reviewers)))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def remove_reviewer(draft: TrustRootV2, name: str) -> TrustRootV2:
    """The draft without reviewer `name`'s key. Raises ConfigError when there is none."""
    reviewers = {k: r for k, r in draft.reviewers.items() if r.name != name}
    if len(reviewers) == len(draft.reviewers):
        raise ConfigError(f"reviewer {name!r} has no key in the draft trust root")
    return _without_unused_keys(dataclasses.replace(draft, reviewers=MappingProxyType(reviewers)))


def add_court(draft: TrustRootV2, court_id: str, name: str, public_hex: str) -> TrustRootV2:
    """The draft with court `court_id` (replacing its key if it had one)."""
    kid, key = _public_key_arg(public_hex)
    courts = dict(draft.courts)
    if kid in draft.keys and kid != getattr(courts.get(court_id), "keyid", None):
        raise ConfigError("this key already has another role in the trust root")
    courts[court_id] = CourtKey(name=name, keyid=kid)
    keys = dict(draft.keys)
    keys[kid] = key
    try:
        return _without_unused_keys(dataclasses.replace(
            draft, keys=MappingProxyType(keys), courts=MappingProxyType(courts)))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def set_log_policy(draft: TrustRootV2, text: str | None) -> TrustRootV2:
    """The draft with the release log's witness policy (tlog-policy lines), or without
    one. Raises ConfigError for text the trust root cannot carry."""
    try:
        return dataclasses.replace(draft, log_policy=text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def load_root_keys(directory: Path) -> list[Ed25519PrivateKey]:
    """Every ``*.key`` in `directory` (the offline root keys). Raises ConfigError."""
    keys = []
    for path in sorted(directory.glob("*.key")):
        try:
            keys.append(private_key_from_pem(path.read_bytes()))
        except (OSError, KeyFormatError) as exc:
            raise ConfigError(f"{path}: cannot read a root key: {exc}") from exc
    if not keys:
        raise ConfigError(f"{directory}: no root key (*.key) found")
    return keys


def sign_draft(layout: DeploymentLayout, keys_dir: Path, now: datetime) -> AnyTrustRoot:
    """Sign the draft with the root keys in `keys_dir`, check it by the device's rotation
    rule against the current root, and put it in force. Raises ConfigError."""
    current = current_root(layout, now)
    draft = load_draft(layout, now)
    if draft.version != current.version + 1:
        raise ConfigError(f"the draft is version {draft.version}; the root in force is "
                          f"{current.version}: prepare the draft again")
    wanted = set(current.root_role.keyids) | set(draft.root_role.keyids)
    signers = [k for k in load_root_keys(keys_dir) if key_id(k.public_key()) in wanted]
    if not signers:
        raise ConfigError(f"{keys_dir}: no key there is a root key of the current or the "
                          "new trust root")
    data = sign_trust_root(draft, signers)
    try:
        accepted = update_any_trust_root(current, data, now=now)
    except TrustRootError as exc:
        raise ConfigError(f"a device would refuse this root: {exc}") from exc
    make_dir(layout.trust_root_chain_dir)
    write_atomic(layout.trust_root_chain_dir / f"{accepted.version:08d}.json", data,
                 mode=0o644, overwrite=True)
    write_atomic(layout.trust_root, data, mode=0o644, overwrite=True)
    if isinstance(accepted, TrustRootV2):
        registry = {"courts": {cid: {"name": c.name,
                                     "public_key": accepted.keys[c.keyid].public_bytes_raw().hex()}
                               for cid, c in accepted.courts.items()}}
        write_atomic(layout.court_registry, (json.dumps(registry, indent=2) + "\n").encode(),
                     mode=0o644, overwrite=True)
    layout.trust_root_draft.unlink(missing_ok=True)
    return accepted


def published_chain(layout: DeploymentLayout) -> list[bytes]:
    """The roots after the first, rising versions, at most the chain's length."""
    directory = layout.trust_root_chain_dir
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return []
    out = []
    for path in paths[-MAX_ROOTS:]:
        with path.open("rb") as fh:
            out.append(fh.read(MAX_ROOT_BYTES + 1))
    return out


def chain_fingerprint(layout: DeploymentLayout) -> bytes:
    """Changes whenever a root is added to the chain (to publish it again)."""
    return canonical_json(sorted(p.name for p in layout.trust_root_chain_dir.glob("*.json")))
