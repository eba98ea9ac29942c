"""`cloud-stub init`, `devices enroll`, `devices revoke` and `devices owner-cert`: the
operator's provisioning commands."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from cloud_stub.cli._common import add_deployment_args, open_service, subcommands
from cloud_stub.errors import CloudError
from cloud_stub.provision.agent_config import DEFAULT_INSTALL_DIR
from cloud_stub.provision.deployment import BrokerPaths, InitOptions, init_deployment
from cloud_stub.provision.enroll import EnrollOptions, enroll_device
from cloud_stub.provision.errors import ProvisionError
from cloud_stub.provision.names import owner_mqtt_user
from cloud_stub.provision.owner import REPLACE_REASON, issue_owner_credential
from cloud_stub.provision.revocations import Scope
from cloud_stub.provision.revoke import RevokeResult, revoke_device
from cloud_stub.services.device_registry import sync_devices
from protocol.bundle import DeploymentLayout
from protocol.topics import DEFAULT_PREFIX


def _init(args: argparse.Namespace) -> int:
    options = InitOptions(
        cloud_id=args.cloud_id,
        prefix=args.prefix,
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        api_url=args.api_url,
        broker_user=args.broker_user,
        broker_bind=args.broker_bind,
    )
    try:
        layout = init_deployment(args.directory, options, now=dt.datetime.now(dt.UTC))
    except ProvisionError as exc:
        print(f"cloud-stub init: {exc}", file=sys.stderr)
        return 1
    print(f"deployment created in {layout.root}")
    print(f"  trust root      {layout.trust_root}")
    print(f"  broker config   {BrokerPaths(layout).config}")
    print(f"  escrow          {layout.escrow_recipient}")
    print(f"  root keys       {layout.offline_root_dir}  <- move this directory OFFLINE now:")
    print("                  it signs trust roots (`cloud-stub root sign --keys DIR`);")
    print("                  `serve` refuses to start while it can read a root key.")
    print(f"  test court      {layout.court_key('x').parent}  (a court's key: move it off "
          "this host)")
    print(f"  test reviewers  {layout.test_reviewers_dir}  (reviewers' keys: move them off "
          "this host)")
    return 0


def _enroll(args: argparse.Namespace) -> int:
    options = EnrollOptions(
        owner_recipient=args.owner_recipient,
        out_dir=args.out,
        tar_path=args.tar,
        owner_out=args.owner_out,
        install_dir=args.install_dir,
        state_dir=args.state_dir,
    )
    try:
        result = enroll_device(
            DeploymentLayout(args.deployment), args.device_id, options,
            now=dt.datetime.now(dt.UTC),
        )
    except ProvisionError as exc:
        print(f"cloud-stub devices enroll: {exc}", file=sys.stderr)
        return 1
    where = result.tar_path if result.tar_path is not None else result.bundle and result.bundle.root
    print(f"device {result.device_id} enrolled; cloud record in {result.record}")
    print(f"bundle (holds the device's private keys) at {where}")
    print(f"install it on the device under {args.install_dir}, then delete it here.")
    print(f"owner bundle (holds the owner's MQTT key) at {result.owner_bundle.root}")
    print("hand it to the owner's application, then delete it here.")
    print(f"broker ACL {result.acl} now names {owner_mqtt_user(result.device_id)}; "
          + RELOAD_ADVICE)
    if not result.certified:
        print(f"no identity certificate for {result.device_id}: the root keys are not on "
              "this host. Agencies need it to check this device's evidence: run "
              "`cloud-stub root certify --keys DIR` where the root keys are.")
    return 0


def register(sub: Any) -> None:
    """Add `init` and `devices enroll` to the `cloud-stub` parser."""
    init = sub.add_parser("init", help="create a deployment directory (CA, keys, trust root)")
    init.add_argument("directory", type=Path, help="new or empty directory")
    init.add_argument("--prefix", default=DEFAULT_PREFIX, help="MQTT topic prefix")
    init.add_argument("--broker-host", default="localhost",
                      help="name the devices use for the broker (goes into its certificate)")
    init.add_argument("--broker-port", type=int, default=8883)
    init.add_argument("--api-url", default="http://127.0.0.1:8080",
                      help="the cloud stub's URL as devices reach it")
    init.add_argument("--cloud-id", default="cloud-stub", help="issuer of release tokens")
    init.add_argument("--broker-user", default="mosquitto",
                      help="user mosquitto drops to when started as root")
    init.add_argument("--broker-bind", default=None,
                      help="listen address (default 127.0.0.1 for a loopback broker host, "
                           "else all addresses)")
    init.set_defaults(handler=_init)

    devices = subcommands(sub, "devices", "device enrolment and registry")
    enroll = devices.add_parser("enroll", help="create a device's keys and bundle")
    enroll.add_argument("device_id", help="1 to 58 characters of a-z, 0-9 and '-', not "
                        "starting with '-'; the certificate CN (the owner's is owner.ID)")
    enroll.add_argument("--owner-recipient", required=True,
                        help="the owner's age recipient (age1...)")
    enroll.add_argument("--deployment", type=Path, default=Path("."),
                        help="deployment directory (default: current directory)")
    target = enroll.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, default=None,
                        help="write the bundle to this new directory")
    target.add_argument("--tar", type=Path, default=None,
                        help="write the bundle as this new tarball (0600)")
    enroll.add_argument("--install-dir", type=Path, default=DEFAULT_INSTALL_DIR,
                        help="where the bundle will live on the device (the paths in its "
                             "agent.toml; default /etc/doorbell)")
    enroll.add_argument("--state-dir", type=Path, default=None,
                        help="agent.state_dir in its agent.toml: where the agent keeps its "
                             "sealed clips and state (default: the agent's, /var/lib/doorbell)")
    enroll.add_argument("--owner-out", type=Path, default=None,
                        help="write the owner's MQTT credential to this new directory "
                             "(default: DEPLOYMENT/devices/ID/owner)")
    enroll.set_defaults(handler=_enroll)
    register_revoke(devices)
    register_owner_cert(devices)


RESTART_ADVICE = (
    "restart the broker now: `systemctl restart mosquitto`. A reload (SIGHUP) makes it "
    "read the CRL and ACL again too, but only for new connections: a revoked client that "
    "is connected stays connected until it reconnects; a restart drops it."
)


def _revoke(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    scope = Scope.OWNER if args.owner_only else Scope.DEVICE
    now = dt.datetime.now(dt.UTC)
    try:
        result = revoke_device(layout, args.device_id, reason=args.reason, scope=scope,
                               now=now)
    except ProvisionError as exc:
        print(f"cloud-stub devices revoke: {exc} [{exc.code}]", file=sys.stderr)
        return 1
    record = result.revocation
    serials = ", ".join(f"{s:x}" for s in record.serials)
    if result.changed:
        what = "device and owner" if record.scope is Scope.DEVICE else "owner"
        print(f"device {record.device_id}: {what} certificates revoked ({serials}).")
    else:
        print(f"device {record.device_id} was revoked already at {record.at.isoformat()} "
              f"(scope {record.scope.value}); nothing changed, CRL and ACL rendered again.")
    if not args.no_store:
        try:
            _record_in_store(args, result)
        except CloudError as exc:
            print(f"cloud-stub devices revoke: the revocation is on disk, but the cloud's "
                  f"store was not updated: {exc.message} [{exc.code}]; run the command "
                  "again once the store is reachable (it is idempotent)", file=sys.stderr)
            return 1
        print("the cloud's registry now refuses it (no new token, no evidence upload); "
              "the revocation is in the audit chain.")
    else:
        print("the cloud's store was not touched (--no-store): the cloud refuses the "
              "device only after its next start, or after this command runs with the store.")
    print(f"CRL {result.crl} and ACL {result.acl} rendered again; "
          f"{owner_mqtt_user(record.device_id)} has no ACL stanza.")
    _print_restart_advice(layout, config_names_crl=result.config_names_crl)
    return 0


def _record_in_store(args: argparse.Namespace, result: RevokeResult) -> None:
    """Mirror the record into the cloud's registry and append it to the audit chain."""
    record = result.revocation
    service = open_service(args)
    try:
        at = service.core.now()  # whole seconds, as every audit entry's time
        with service.store.transaction() as session:
            sync_devices(session, service.core.layout, at)
            if result.changed:
                service.core.audit.append(
                    session, at=at, actor="operator:cli", action="device.revoked",
                    subject=f"device:{record.device_id}",
                    detail={"scope": record.scope.value, "reason": record.reason,
                            "serials": [f"{s:x}" for s in record.serials]},
                )
    finally:
        service.close()


def register_revoke(devices: Any) -> None:
    revoke = devices.add_parser(
        "revoke", help="revoke a lost or stolen device's (or only its owner's) certificates")
    revoke.add_argument("device_id", help="an enrolled device id")
    revoke.add_argument("--reason", required=True, help="why (kept in revoked.json and audit)")
    revoke.add_argument("--owner-only", action="store_true",
                        help="revoke only the owner's MQTT certificate (a lost phone); the "
                             "device stays in service")
    revoke.add_argument("--no-store", action="store_true",
                        help="do not open the cloud's store (no registry update, no audit)")
    add_deployment_args(revoke)
    revoke.set_defaults(handler=_revoke)


RELOAD_ADVICE = ("reload the broker before the owner connects: `systemctl reload mosquitto` "
                 "or `kill -HUP <mosquitto pid>` (a broker started after this reads it anyway).")


def _print_restart_advice(layout: DeploymentLayout, *, config_names_crl: bool) -> None:
    """After a certificate went into the CRL: restart the broker, and first make its
    configuration name the CRL when a deployment made before revocation does not."""
    if not config_names_crl:
        paths = BrokerPaths(layout)
        print(f"WARNING: {paths.config} does not name the CRL (a deployment made before "
              "revocation existed): the broker still accepts the revoked certificate. Add "
              f"`crlfile {paths.crl.resolve()}` under `cafile` in the listener, then "
              "restart the broker.")
    print(RESTART_ADVICE)


def _owner_cert(args: argparse.Namespace) -> int:
    layout = DeploymentLayout(args.deployment)
    name = "cloud-stub devices owner-cert"
    try:
        service = open_service(args)  # an unreachable or old store refuses before any write
    except CloudError as exc:
        print(f"{name}: {exc.message} [{exc.code}]; nothing was issued", file=sys.stderr)
        return 1
    try:
        try:
            result = issue_owner_credential(
                layout, args.device_id, now=dt.datetime.now(dt.UTC), out_dir=args.out,
                replace=args.replace, reason=args.reason)
        except ProvisionError as exc:
            print(f"{name}: {exc} [{exc.code}]", file=sys.stderr)
            return 1
        try:
            at = service.core.now()
            with service.store.transaction() as session:
                service.core.audit.append(
                    session, at=at, actor="operator:cli", action="device.owner_cert_issued",
                    subject=f"device:{result.device_id}",
                    detail={"serial": f"{result.serial:x}",
                            "replaced": None if result.replaced is None
                            else f"{result.replaced:x}",
                            "reason": args.reason if result.replaced is not None else None},
                )
        except CloudError as exc:
            print(f"{name}: the owner credential is issued on disk, but the audit entry was "
                  f"not written: {exc.message} [{exc.code}]", file=sys.stderr)
            return 1
    finally:
        service.close()
    user = owner_mqtt_user(result.device_id)
    print(f"device {result.device_id}: owner certificate {result.serial:x} issued to {user}.")
    print(f"owner bundle (holds the owner's MQTT key) at {result.owner_bundle.root}")
    print("hand it to the owner's application, then delete it here.")
    print(f"broker ACL {result.acl} names {user}; the issue is in the audit chain.")
    if result.replaced is None:
        print(RELOAD_ADVICE)
        return 0
    print(f"the replaced owner certificate {result.replaced:x} is revoked in the CRL "
          f"{result.crl}.")
    _print_restart_advice(layout, config_names_crl=result.config_names_crl)
    return 0


def register_owner_cert(devices: Any) -> None:
    owner = devices.add_parser(
        "owner-cert", help="issue the owner's MQTT credential of a device enrolled without "
                           "one, or (--replace) a new one for a lost one")
    owner.add_argument("device_id", help="an enrolled, not revoked device id")
    owner.add_argument("--out", type=Path, default=None,
                       help="write the owner bundle to this new directory "
                            "(default: DEPLOYMENT/devices/ID/owner)")
    owner.add_argument("--replace", action="store_true",
                       help="the device has an owner credential: revoke it (CRL) and issue "
                            "a new one")
    owner.add_argument("--reason", default=REPLACE_REASON,
                       help="with --replace: why (kept in revoked.json and the audit chain)")
    add_deployment_args(owner)
    owner.set_defaults(handler=_owner_cert)
