"""`doorbell-review`: keygen, queue, show, approve, deny, reissue (docs/adr/0013-trust-root-v2.md).

The API address and key come from ``--api``/``--api-key`` or the environment
(``DOORBELL_REVIEW_API``, ``DOORBELL_REVIEW_API_KEY``); the signing key from ``--key``
(default ``$XDG_CONFIG_HOME/doorbell-review/reviewer.key``). Exit 0 on success, 1 when
the service or the checks refuse, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorbell_review.checks import check_payload, check_reissue
from doorbell_review.client import ApiError, ReviewApi
from doorbell_review.keys import ReviewKeyError, default_key_path, generate, load
from protocol.errors import TrustRootError
from protocol.keys import key_id, public_key_hex
from protocol.release_signing import SignatureRefused, sign_detached
from protocol.trust_root import DEFAULT_LIMITS, BasisLimits
from protocol.trust_root_v2 import TrustRootV2, load_any_trust_root


class UsageError(Exception):
    pass


def _api(args: argparse.Namespace) -> ReviewApi:
    url = args.api or os.environ.get("DOORBELL_REVIEW_API")
    key = args.api_key or os.environ.get("DOORBELL_REVIEW_API_KEY")
    if not url or not key:
        raise UsageError("give --api and --api-key (or DOORBELL_REVIEW_API and "
                         "DOORBELL_REVIEW_API_KEY)")
    return ReviewApi(url, key)


def _keygen(args: argparse.Namespace) -> int:
    key = generate(args.key)
    print(f"key written to {args.key} (mode 600); it never leaves this machine.")
    print(f"public key: {public_key_hex(key)}")
    print(f"key id:     {key_id(key.public_key())}")
    print("give the public key to the operator: cloud-stub reviewers add NAME --org ORG "
          "--public-key <public key>")
    return 0


def _queue(args: argparse.Namespace) -> int:
    api = _api(args)
    try:
        rows = api.queue()
    finally:
        api.close()
    if not rows:
        print("(nothing waits for review)")
    for row in rows:
        print(f"{row['id']}  {row['basis']:<12} {','.join(row['devices'])}  "
              f"approvals {row['approvals']['received']}/{row['approvals']['required']}")
    return 0


def _print_payloads(request: dict[str, Any], prepared: dict[str, Any]) -> None:
    print(f"request {request['id']}: {request['basis']} from {request['agency']} "
          f"({request['org']}), status {request['status']}")
    print(f"trust root version {prepared['root_version']}; you would sign "
          f"{len(prepared['payloads'])} token(s):")
    for entry in prepared["payloads"]:
        summary = entry["summary"]
        print(f"- token {entry['jti']}")
        print(f"    device:     {summary['device']}")
        print(f"    basis:      {summary['basis']}")
        print(f"    window:     {summary['window']}")
        print(f"    case:       {summary['case']}")
        print(f"    court:      {summary['court'] or '(none: not a warrant)'}")
        print(f"    requester:  key fingerprint {summary['requester_key_fingerprint']}")
        print(f"    expires:    {summary['expires']}")
        print(f"    payload sha256: {entry['payload_sha256']}")


def _limits(args: argparse.Namespace) -> tuple[dict[str, BasisLimits], TrustRootV2 | None]:
    if args.trust_root is None:
        return dict(DEFAULT_LIMITS), None
    from datetime import UTC, datetime

    try:
        root = load_any_trust_root(args.trust_root.read_bytes(), now=datetime.now(UTC))
    except (OSError, TrustRootError) as exc:
        raise UsageError(f"--trust-root {args.trust_root}: {exc}") from exc
    return dict(root.limits), root if isinstance(root, TrustRootV2) else None


def _show(args: argparse.Namespace) -> int:
    api = _api(args)
    try:
        request = api.request(args.request_id)
        prepared = api.signing_payload(args.request_id)
    finally:
        api.close()
    _print_payloads(request, prepared)
    limits, _ = _limits(args)
    for entry in prepared["payloads"]:
        check_payload(request, entry, limits)
    print("checked: every payload is this request, within the trust root's limits.")
    return 0


def _reviewer_key(args: argparse.Namespace
                  ) -> tuple[Ed25519PrivateKey, str, dict[str, BasisLimits]]:
    """The reviewer's signing key, its key id and the limits to check payloads against.
    Raises UsageError when the trust root given does not list the key as a reviewer."""
    key = load(args.key)
    kid = key_id(key.public_key())
    limits, root = _limits(args)
    if root is not None and kid not in root.reviewers:
        raise UsageError(f"your key {kid[:16]}... is not a reviewer of that trust root")
    return key, kid, limits


def _sign_each(prepared: dict[str, Any], key: Ed25519PrivateKey,
               check: Callable[[dict[str, Any]], object]) -> list[dict[str, Any]]:
    """Each prepared payload checked by `check` (which raises to refuse), then signed."""
    signatures = []
    for entry in prepared["payloads"]:
        check(entry)
        detached = sign_detached(entry["payload"], key)
        signatures.append({"jti": entry["jti"], **detached.to_json()})
    return signatures


def _approve(args: argparse.Namespace) -> int:
    key, kid, limits = _reviewer_key(args)
    api = _api(args)
    try:
        request = api.request(args.request_id)
        prepared = api.signing_payload(args.request_id)
        _print_payloads(request, prepared)
        signatures = _sign_each(prepared, key,
                                lambda entry: check_payload(request, entry, limits))
        result = api.sign(args.request_id,
                          {"kid": kid, "reason": args.reason, "signatures": signatures})
    finally:
        api.close()
    print(f"signed {len(signatures)} token(s) with key {kid[:16]}...; request "
          f"{result['id']} is now {result['status']} "
          f"({result['approvals']['received']}/{result['approvals']['required']} approvals)")
    return 0


def _reissue(args: argparse.Namespace) -> int:
    """Sign the new tokens that replace the ones a device refused (``stale_seq``,
    ``expired``), after the same checks as `approve` and that each replaces another."""
    key, kid, limits = _reviewer_key(args)
    api = _api(args)
    try:
        request = api.request(args.request_id)
        prepared = api.reissue_payload(args.request_id)
        _print_payloads(request, prepared)

        def check(entry: dict[str, Any]) -> object:
            replaces = entry.get("replaces") or {}
            print(f"  token {entry['jti']} replaces {replaces.get('jti')} "
                  f"(refused {replaces.get('refused')})")
            return check_reissue(request, entry, limits)

        signatures = _sign_each(prepared, key, check)
        result = api.reissue_sign(args.request_id,
                                  {"kid": kid, "reason": args.reason, "signatures": signatures})
    finally:
        api.close()
    print(f"signed {len(signatures)} re-issued token(s) with key {kid[:16]}...; request "
          f"{result['id']} is now {result['status']} "
          f"({prepared['reviewers_required']} reviewer signature(s) needed)")
    return 0


def _deny(args: argparse.Namespace) -> int:
    api = _api(args)
    try:
        result = api.deny(args.request_id, args.reason)
    finally:
        api.close()
    print(f"request {result['id']} is now {result['status']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doorbell-review", description=__doc__.split("\n")[0])
    parser.add_argument("--api", default=None, help="the cloud stub's URL")
    parser.add_argument("--api-key", default=None, help="your reviewer API key")
    parser.add_argument("--key", type=Path, default=default_key_path(),
                        help="your signing key (default: %(default)s)")
    parser.add_argument("--trust-root", type=Path, default=None,
                        help="a trust root to check payloads against (its limits, your key)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("keygen", help="make your signing key; print the public key"
                   ).set_defaults(handler=_keygen)
    sub.add_parser("queue", help="requests waiting for review").set_defaults(handler=_queue)
    show = sub.add_parser("show", help="what approving a request would sign, in words")
    show.add_argument("request_id")
    show.set_defaults(handler=_show)
    for name, handler, text in (("approve", _approve, "check, sign locally, post"),
                                ("deny", _deny, "deny with a reason"),
                                ("reissue", _reissue, "check, sign and post new tokens "
                                 "for ones a device refused (stale_seq, expired)")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("request_id")
        cmd.add_argument("--reason", required=True)
        cmd.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        print(f"doorbell-review: {exc}", file=sys.stderr)
        return 2
    except (ApiError, ReviewKeyError, SignatureRefused) as exc:
        print(f"doorbell-review: {exc}", file=sys.stderr)
        return 1


