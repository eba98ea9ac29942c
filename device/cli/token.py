"""`doorbell-agent token verify FILE --trust-root FILE --device ID [--now T] [--unsynchronized]`.

Checks a release or preservation token offline with the agent's own verifier
(`protocol.release_check.verify_any`: the v1 or v2 rules, as the trust root's format
says; without replay state) and prints one JSON line
``{"accepted": bool, "code": <rejection code or null>, "detail": "..."}``.
Exit 0 when accepted, 1 when rejected, 2 on a usage error (an unreadable or refused
trust root, an unreadable token file, a bad --now).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocol.errors import TokenRejected, TrustRootError
from protocol.timefmt import format_time, parse_time

PROG = "doorbell-agent token verify"


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("token", help="release tokens")
    sub = group.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    verify = sub.add_parser(
        "verify",
        help="check a token offline and say why the device would refuse it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("token", type=Path, metavar="FILE", help="the token (JWS JSON)")
    verify.add_argument("--trust-root", type=Path, required=True, help="trust root JSON file")
    verify.add_argument("--device", required=True, help="the device id the token must name")
    verify.add_argument(
        "--now",
        default=None,
        help="the time to judge at, RFC 3339 UTC like 2026-06-01T12:00:00Z (default: now)",
    )
    verify.add_argument(
        "--unsynchronized",
        action="store_true",
        help="judge as a device whose clock is not synchronized (expect clock_unsynchronized)",
    )
    verify.set_defaults(handler=_verify)


def _usage(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _read_capped(path: Path, cap: int) -> bytes:
    """At most cap + 1 bytes: enough to tell an oversized file without reading all of it."""
    with path.open("rb") as handle:
        return handle.read(cap + 1)


def _verify(args: argparse.Namespace) -> int:
    # Imported here: every other command (`run` among them) would pay for the JOSE and
    # x509 stack at start-up (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).
    from protocol.release_check import verify_any
    from protocol.token import MAX_TOKEN_BYTES, VerificationContext
    from protocol.trust_root import MAX_ROOT_BYTES
    from protocol.trust_root_v2 import load_any_trust_root

    if args.now is None:
        now = datetime.now(UTC)
    else:
        try:
            now = parse_time(args.now)
        except ValueError as exc:
            return _usage(f"--now: {exc}")
    try:
        root_bytes = _read_capped(args.trust_root, MAX_ROOT_BYTES)
    except OSError as exc:
        return _usage(f"cannot read trust root {args.trust_root}: {exc.strerror or exc}")
    try:
        root = load_any_trust_root(root_bytes, now=now)
    except TrustRootError as exc:
        return _usage(f"trust root {args.trust_root} refused: {exc}")
    try:
        token = _read_capped(args.token, MAX_TOKEN_BYTES)
    except OSError as exc:
        return _usage(f"cannot read token {args.token}: {exc.strerror or exc}")
    try:
        context = VerificationContext(
            device_id=args.device, now=now, clock_synchronized=not args.unsynchronized
        )
    except ValueError as exc:
        return _usage(str(exc))
    try:
        claims = verify_any(token, root=root, context=context, replay=None)
    except TokenRejected as exc:
        print(json.dumps({"accepted": False, "code": exc.code.value, "detail": exc.detail}))
        return 1
    detail = (
        f"{claims.basis} token {claims.jti} (seq {claims.seq}) for {claims.aud}, window "
        f"{format_time(claims.window.start)} to {format_time(claims.window.end)}, "
        f"judged at {format_time(now)} without replay state"
    )
    print(json.dumps({"accepted": True, "code": None, "detail": detail}))
    return 0
