"""`cloud-stub court sign|verify|check|list`: a tester's court, from the deployment directory.

``court sign`` hashes a warrant document, builds the canonical warrant statement and
signs it with the court's key (``courts/<court_id>.key``), then prints the fields an
agency copies into its warrant request (JSON). ``court verify`` checks only the court's
signature of a request body (JSON file). ``court check`` runs the whole legal check on a
request body offline, with the deployment's policy file (``cloud/policy.toml`` when
present) and registry, as the service will (without the agency's earlier preservations
or the device registry). ``court list`` shows the registry. Only the key, the registry
and the policy file are read; nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from cloud_stub.config import default_store_url
from cloud_stub.errors import CloudError
from cloud_stub.policy.base import PolicyContext
from cloud_stub.policy.config import build_policy
from cloud_stub.policy.courts import (
    WarrantStatement,
    load_court_key,
    load_court_registry,
    request_fields,
    sign_warrant,
    verify_warrant_signature,
)
from cloud_stub.policy.errors import PolicyViolation
from cloud_stub.policy.requests import (
    AnyRequest,
    OrderType,
    WarrantRequest,
    basis_of,
    parse_request_json,
)
from cloud_stub.services.intake import DEVICE_NOT_ENROLLED, DEVICE_REVOKED
from cloud_stub.store import Store
from cloud_stub.store.models import EscrowedEpoch
from protocol.bundle import DeploymentLayout
from protocol.keys import key_id

MAX_REQUEST_FILE = 256 * 1024


class _UsageError(Exception):
    pass


def _instant(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _UsageError(f"{name}: {text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise _UsageError(f"{name}: {text!r} has no UTC offset (add Z or +hh:mm)")
    return value.astimezone(UTC)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise _UsageError(f"--document: cannot read {path}: {exc}") from exc
    return digest.hexdigest()


def _devices(values: list[str]) -> tuple[str, ...]:
    devices = tuple(d.strip() for value in values for d in value.split(",") if d.strip())
    if not devices:
        raise _UsageError("--devices: name at least one device")
    return devices


def _sign(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    issued = _instant(args.issued, "--issued") if args.issued else datetime.now(UTC)
    issued = issued.replace(microsecond=0)
    expires = (
        _instant(args.expires, "--expires")
        if args.expires
        else issued + timedelta(days=args.valid_days)
    )
    statement = WarrantStatement(
        court_id=args.court,
        docket=args.docket,
        judge=args.judge,
        order_type=OrderType(args.order_type),
        issued=issued,
        expires=expires,
        document_sha256=_sha256_file(args.document),
        device_ids=_devices(args.devices),
        window_start=_instant(args.window_start, "--window-start"),
        window_end=_instant(args.window_end, "--window-end"),
        notify_after=_instant(args.notify_after, "--notify-after") if args.notify_after else None,
    )
    registry = load_court_registry(layout.court_registry)
    key_path = args.key or layout.court_key(args.court)
    court_key = load_court_key(key_path)
    court = registry.get(args.court)
    if court is None:
        raise _UsageError(f"--court: {args.court!r} is not in {layout.court_registry}")
    if key_id(court.public_key) != key_id(court_key.public_key()):
        raise _UsageError(f"{key_path} is not the key the registry holds")
    fields = request_fields(statement, sign_warrant(statement, court_key))
    json.dump(fields, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _read_request(args: argparse.Namespace) -> AnyRequest:
    try:
        with args.request.open("rb") as fh:
            body = fh.read(MAX_REQUEST_FILE + 1)
    except OSError as exc:
        raise _UsageError(f"cannot read {args.request}: {exc}") from exc
    if len(body) > MAX_REQUEST_FILE:
        raise _UsageError(f"{args.request}: larger than {MAX_REQUEST_FILE} bytes")
    try:
        request = parse_request_json(body)
    except ValidationError as exc:
        raise _UsageError(
            f"{args.request}: not a valid request: {exc.errors()[0]['msg']}"
        ) from None
    return request


def _verify(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    registry = load_court_registry(layout.court_registry)
    request = _read_request(args)
    if not isinstance(request, WarrantRequest):
        raise _UsageError(f"{args.request}: not a warrant request")
    try:
        statement = WarrantStatement.from_request(request)
        if request.court_signature is None:
            raise _UsageError(f"{args.request}: no court_signature")
        court = verify_warrant_signature(statement, request.court_signature, registry)
    except PolicyViolation as violation:
        print(f"NOT signed: {violation.reason} [{violation.code}]", file=sys.stderr)
        return 2
    print(f"signed by {court.name} ({court.court_id}), docket {statement.docket}")
    return 0


def _check(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    policy_path: Path | None = args.policy
    if policy_path is None and (layout.cloud_dir / "policy.toml").is_file():
        policy_path = layout.cloud_dir / "policy.toml"
    policy = build_policy(policy_path)
    ctx = PolicyContext(
        now=_instant(args.now, "--now") if args.now else datetime.now(UTC),
        courts=load_court_registry(layout.court_registry),
        requester=args.requester,
    )
    request = _read_request(args)
    try:
        policy.check(request, ctx)
    except PolicyViolation as violation:
        print(f"REFUSED [{violation.code}]: {violation.reason}")
        return 3
    refusal = _device_refusal(layout, request)
    if refusal is not None:
        code, reason = refusal
        print(f"REFUSED [{code}]: {reason}")
        return 3
    print(f"passes the legal check ({basis_of(request)}); a reviewer decides next")
    for note in _footage_notes(layout, request, args.store_url):
        print(note)
    return 0


def _device_refusal(layout: DeploymentLayout, request: AnyRequest) -> tuple[str, str] | None:
    """What the service checks after the policy, from the deployment's device registry:
    every named device enrolled and not revoked. (code, reason), or None."""
    devices = list(getattr(request, "device_ids", None) or [])
    missing = [d for d in devices
               if not (layout.device_record(d) / "identity.pub").is_file()]
    if missing:
        return (DEVICE_NOT_ENROLLED,
                f"no enrolled device named {', '.join(repr(d) for d in missing[:5])} "
                f"in {layout.devices_dir}")
    revoked = [d for d in devices if (layout.device_record(d) / "revoked.json").exists()]
    if revoked:
        return (DEVICE_REVOKED,
                f"revoked device {', '.join(repr(d) for d in revoked[:5])}: it gets no new token")
    return None


def _footage_notes(layout: DeploymentLayout, request: AnyRequest,
                   store_url: str | None) -> list[str]:
    """Whether the cloud holds keys for the window (else an approval releases nothing:
    `no_escrowed_epochs`), when the deployment's store can be read; else a note saying
    it was not checked."""
    window = getattr(request, "window", None)
    devices = list(getattr(request, "device_ids", None) or [])
    if window is None or not devices or basis_of(request) == "preservation":
        return []
    url = store_url or default_store_url(layout)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return ["footage not checked: the cloud's store does not exist yet (cloud-stub serve "
                "creates it)"]
    store = Store(url)
    try:
        with store.read() as session:
            held = set(session.execute(
                select(EscrowedEpoch.device_id).where(
                    EscrowedEpoch.device_id.in_(devices),
                    EscrowedEpoch.start < window.end,
                    EscrowedEpoch.end > window.start,
                )
            ).scalars())
    except Exception as exc:  # a store this version cannot read: say so, decide nothing
        return [f"footage not checked: cannot read the store: {type(exc).__name__}"]
    finally:
        store.dispose()
    return [
        f"no footage to release from {d} [no_escrowed_epochs]: the doorbell has sent the "
        "cloud no key for any hour of this window (it was offline or not yet enrolled "
        "then, or deleted that footage), so an approval would release nothing"
        for d in devices if d not in held
    ]


def _list(args: argparse.Namespace) -> int:
    registry = load_court_registry(DeploymentLayout(args.deployment).court_registry)
    rows = [(c.court_id, c.name, key_id(c.public_key)[:16]) for c in registry.values()]
    if args.json:
        json.dump([{"court_id": r[0], "name": r[1], "kid": r[2]} for r in rows], sys.stdout)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print("(no courts)")
        return 0
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("court", "name"))]
    print(f"{'court'.ljust(widths[0])}  {'name'.ljust(widths[1])}  kid")
    for court_id, name, kid in sorted(rows):
        print(f"{court_id.ljust(widths[0])}  {name.ljust(widths[1])}  {kid}")
    return 0


def _guard(name: str, fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except _UsageError as exc:
            print(f"cloud-stub court {name}: {exc}", file=sys.stderr)
            return 2
        except CloudError as exc:
            print(f"cloud-stub court {name}: {exc.message} [{exc.code}]", file=sys.stderr)
            return 1

    return run


def register(sub: Any) -> None:
    group = sub.add_parser("court", help="a tester's court: sign and verify warrants")
    group_sub = group.add_subparsers(dest="court_command", required=True, metavar="COMMAND")

    sign = group_sub.add_parser("sign", help="sign a warrant; print the request's fields (JSON)")
    sign.add_argument("--deployment", type=Path, default=Path("."), help="deployment directory")
    sign.add_argument("--court", required=True, help="court id in cloud/courts.json")
    sign.add_argument("--document", type=Path, required=True, help="the warrant document")
    sign.add_argument("--docket", required=True)
    sign.add_argument("--judge", required=True)
    sign.add_argument(
        "--devices", action="append", required=True, help="device ids (comma-separated)"
    )
    sign.add_argument("--window-start", required=True, help="RFC 3339, e.g. 2026-11-28T06:00Z")
    sign.add_argument("--window-end", required=True, help="RFC 3339")
    sign.add_argument("--issued", help="RFC 3339 (default: now)")
    sign.add_argument("--expires", help="RFC 3339 (default: issued + --valid-days)")
    sign.add_argument("--valid-days", type=int, default=10)
    sign.add_argument(
        "--order-type", choices=[o.value for o in OrderType], default=OrderType.SEARCH_WARRANT
    )
    sign.add_argument("--notify-after", help="RFC 3339: delay the owner's notice until then")
    sign.add_argument("--key", type=Path, default=None,
                      help="the court's private key (default: DEPLOYMENT/courts/COURT.key; a "
                           "court keeps it off the service host)")
    sign.set_defaults(handler=_guard("sign", _sign))

    verify = group_sub.add_parser("verify", help="check a warrant request's court signature")
    verify.add_argument("request", type=Path, help="request body (JSON file)")
    verify.add_argument("--deployment", type=Path, default=Path("."), help="deployment directory")
    verify.set_defaults(handler=_guard("verify", _verify))

    check = group_sub.add_parser("check", help="run the whole legal check on a request (JSON)")
    check.add_argument("request", type=Path, help="request body (JSON file)")
    check.add_argument("--deployment", type=Path, default=Path("."), help="deployment directory")
    check.add_argument("--policy", type=Path, help="policy file (default: cloud/policy.toml)")
    check.add_argument("--now", help="RFC 3339 (default: the system clock)")
    check.add_argument("--requester", default="offline-check", help="the agency asking")
    check.add_argument("--store-url", default=None,
                       help="the cloud's store, to say whether it holds keys for the window "
                            "(default: cloud/store-url, else SQLite in cloud/)")
    check.set_defaults(handler=_guard("check", _check))

    listing = group_sub.add_parser("list", help="the court registry")
    listing.add_argument("--deployment", type=Path, default=Path("."), help="deployment directory")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_guard("list", _list))
