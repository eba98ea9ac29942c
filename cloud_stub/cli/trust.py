"""`cloud-stub courts add`, `cloud-stub root show|sign|certify`: preparing and signing
trust roots (`cloud_stub.provision.trust_roots`, docs/adr/0013-trust-root-v2.md), and
certifying the identity keys of devices enrolled after the root keys went offline
(`cloud_stub.provision.device_certs`).

`root sign --keys DIR` and `root certify --keys DIR` are run where the root keys are (the
directory `init` asked to move offline); they need the deployment's public files only,
never the service's secrets."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_stub.cli._common import add_deployment_args, guarded, subcommands
from cloud_stub.config import load_deployment
from cloud_stub.errors import ConfigError
from cloud_stub.provision.deployment import enrolled_device_ids, write_broker_acl
from cloud_stub.provision.device_certs import certify_enrolled
from cloud_stub.provision.trust_roots import (
    add_court,
    add_reviewer,
    current_root,
    load_draft,
    load_root_keys,
    remove_reviewer,
    save_draft,
    set_log_policy,
    sign_draft,
)
from cloud_stub.services.device_registry import read_device_record
from protocol.bundle import DeploymentLayout
from protocol.keys import key_id
from protocol.trust_root_v2 import TrustRootV2


def _now() -> datetime:
    return datetime.now(UTC)


def _courts_add(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    draft = add_court(load_draft(layout, _now()), args.court_id, args.name, args.public_key)
    path = save_draft(layout, draft)
    print(f"court {args.court_id} added to the draft trust root version {draft.version} "
          f"({path}); sign it with `cloud-stub root sign --keys DIR` where the root keys are.")
    return 0


def add_reviewer_key(deployment: Path, name: str, org: str, public_key: str) -> None:
    """Put reviewer `name`'s public key in the draft (``reviewers add --public-key``)."""
    layout = DeploymentLayout(deployment)
    draft = add_reviewer(load_draft(layout, _now()), name, org, public_key)
    path = save_draft(layout, draft)
    print(f"reviewer {name}'s key added to the draft trust root version {draft.version} "
          f"({path}); sign it with `cloud-stub root sign --keys DIR` where the root keys are.",
          file=sys.stderr)


def _remove_key(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    draft = remove_reviewer(load_draft(layout, _now()), args.name)
    path = save_draft(layout, draft)
    print(f"reviewer {args.name}'s key removed from the draft trust root version "
          f"{draft.version} ({path}); sign it to take effect.")
    return 0


def _log_policy(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    text = None
    if args.file is not None:
        try:
            text = args.file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{args.file}: cannot read the witness policy: {exc}") from exc
    draft = set_log_policy(load_draft(layout, _now()), text)
    path = save_draft(layout, draft)
    what = "set" if text is not None else "removed"
    print(f"release log witness policy {what} in the draft trust root version "
          f"{draft.version} ({path}); sign it to take effect.")
    return 0


def _show(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    draft = load_draft(layout, _now())
    print(json.dumps(_summary(draft), indent=1))
    return 0


def _summary(root: TrustRootV2) -> dict[str, Any]:
    return {
        "version": root.version,
        "reviewers": {r.name: {"org": r.org, "kid": kid} for kid, r in root.reviewers.items()},
        "courts": {cid: c.keyid for cid, c in root.courts.items()},
        "policy": sorted(root.policy_keyids),
        "log_policy": root.log_policy,
        "rules": {b: {"policy": r.policy, "review": r.review, "review_orgs": r.review_orgs,
                      "court": r.court} for b, r in root.rules.items()},
    }


def _sign(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    root = sign_draft(layout, args.keys, _now())
    print(f"trust root version {root.version} signed and in force ({layout.trust_root}); "
          "the service publishes it to every device, which applies it by the rotation rule.")
    # a deployment made before the trust-root topic: its devices may now read it
    acl = write_broker_acl(layout, load_deployment(layout).prefix)
    print(f"broker ACL {acl} rendered (each device reads its own trust-root topic); "
          "reload mosquitto (SIGHUP) if it was older than this version.")
    if isinstance(root, TrustRootV2) and layout.signer_key("review").exists():
        print(f"{layout.signer_key('review')} (v1's review key) counts for no one now: delete "
              "it; `serve` refuses to start while it can read it.")
    return 0


def _certify(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    now = _now()
    role = current_root(layout, now).root_role
    signers = [k for k in load_root_keys(args.keys) if key_id(k.public_key()) in role.keyids]
    if len(signers) < role.threshold:
        raise ConfigError(f"{args.keys}: holds {len(signers)} of the root role's keys of the "
                          f"trust root in force; a certificate needs {role.threshold}")
    identities = {}
    for device_id in enrolled_device_ids(layout):
        try:
            record = read_device_record(layout.device_record(device_id))
        except ValueError as exc:
            raise ConfigError(f"cannot certify device {device_id}: {exc}") from exc
        identities[device_id] = record.identity_pub
    done = certify_enrolled(layout, identities, signers, now)
    if done:
        print(f"identity certificates made for {len(done)} device(s): {', '.join(done)}; "
              "agencies now receive them with the evidence.")
    else:
        print("every enrolled device has its identity certificate already.")
    return 0


def register(sub: Any) -> None:
    courts = sub.add_parser("courts", help="courts of the trust root")
    courts_sub = courts.add_subparsers(dest="courts_command", required=True, metavar="COMMAND")
    add = courts_sub.add_parser("add", help="add a court's public key to the draft trust root")
    add.add_argument("court_id")
    add.add_argument("--name", required=True, help="the court's name")
    add.add_argument("--public-key", required=True, help="the court's Ed25519 key, 64 hex")
    add_deployment_args(add)
    add.set_defaults(handler=guarded("courts add", _courts_add))

    reviewers = subcommands(sub, "reviewers", "manage reviewers")
    remove = reviewers.add_parser("remove-key",
                                  help="take a reviewer's key out of the draft trust root")
    remove.add_argument("name")
    add_deployment_args(remove)
    remove.set_defaults(handler=guarded("reviewers remove-key", _remove_key))

    root = sub.add_parser("root", help="the trust root: show the draft, sign it")
    root_sub = root.add_subparsers(dest="root_command", required=True, metavar="COMMAND")
    show = root_sub.add_parser("show", help="print the draft of the next trust root")
    add_deployment_args(show)
    show.set_defaults(handler=guarded("root show", _show))
    log_policy = root_sub.add_parser(
        "log-policy", help="put the release log's witness policy (tlog-policy lines) in the "
                           "draft, or take it out")
    group = log_policy.add_mutually_exclusive_group(required=True)
    group.add_argument("file", type=Path, nargs="?", default=None,
                       help="the witness policy file")
    group.add_argument("--clear", action="store_true", help="no witness policy")
    add_deployment_args(log_policy)
    log_policy.set_defaults(handler=guarded("root log-policy", _log_policy))
    sign = root_sub.add_parser("sign", help="sign the draft with the offline root keys")
    sign.add_argument("--keys", type=Path, required=True,
                      help="directory holding the root keys (root-1.key, root-2.key)")
    add_deployment_args(sign)
    sign.set_defaults(handler=guarded("root sign", _sign))
    certify = root_sub.add_parser(
        "certify", help="certify the identity keys of enrolled devices that have no "
                        "certificate yet, with the offline root keys")
    certify.add_argument("--keys", type=Path, required=True,
                         help="directory holding the root keys (root-1.key, root-2.key)")
    add_deployment_args(certify)
    certify.set_defaults(handler=guarded("root certify", _certify))
