"""`cloud-stub agencies add`, `reviewers add`, `admins add`: principals and their API keys.

The API key is printed once and stored only as a hash. ``agencies add`` also writes an
age identity for testers under the deployment's ``agencies/NAME/`` (``agency.key``,
0600, and ``agency.pub``): an agency puts that recipient in its requests and opens its
evidence with ``age -d -i agency.key``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pyrage

from cloud_stub.cli._common import add_deployment_args, guarded, open_service, print_json
from cloud_stub.errors import Conflict, EnvironmentFault
from cloud_stub.store.principals import check_name, create_principal


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _agency_identity(directory: Path) -> str:
    """Create the tester's agency identity (refusing to overwrite one); returns its
    recipient. Raises `Conflict` when one exists and `EnvironmentFault` on disk errors."""
    key_path, pub_path = directory / "agency.key", directory / "agency.pub"
    if key_path.exists():
        raise Conflict(f"{key_path} already exists", code="exists")
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(key_path, f"{identity}\n".encode())
        _write_private(pub_path, f"{recipient}\n".encode())
        os.chmod(pub_path, 0o644)
    except OSError as exc:
        raise EnvironmentFault(f"cannot write {directory}: {exc}") from exc
    return recipient


def _write_key_file(path: Path, token: str) -> None:
    try:
        _write_private(path, f"{token}\n".encode())
    except OSError as exc:
        raise EnvironmentFault(
            f"the principal was created, but its API key could not be written to {path}: "
            f"{exc.strerror}; add another principal"
        ) from exc


def _add(role: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        if args.key_file is not None and args.key_file.exists():
            raise Conflict(f"{args.key_file} already exists", code="exists")
        service = open_service(args)
        try:
            check_name(role, args.name)
            org = args.org if role != "agency" else (args.org or args.name)
            recipient = None
            if role == "agency":
                recipient = _agency_identity(service.core.layout.agency_dir(args.name))
            with service.store.transaction() as session:
                row, token = create_principal(
                    session, name=args.name, role=role, org=org, now=service.core.now(),
                    recipient=recipient,
                )
                service.core.audit.append(
                    session, at=service.core.now(), actor="operator:cli",
                    action="principal.created", subject=f"{role}:{row.name}",
                    detail={"org": org, "key_id": row.key_id},
                )
        finally:
            service.close()
        if getattr(args, "public_key", None):
            from cloud_stub.cli.trust import add_reviewer_key

            add_reviewer_key(args.deployment, args.name, org, args.public_key)
        if args.key_file is not None:
            _write_key_file(args.key_file, token)
        if args.json:
            out = {"name": args.name, "role": role, "org": org, "api_key": token}
            if recipient:
                out["recipient"] = recipient
                out["identity_file"] = str(service.core.layout.agency_dir(args.name) / "agency.key")
            print_json(out)
        else:
            print(f"{role} {args.name} (organisation {org}) created.")
            if args.key_file is not None:
                print(f"API key written to {args.key_file} (0600); it is not shown again.")
            else:
                print(f"API key (shown once, store it now): {token}")
            if recipient:
                print(f"age recipient for requests: {recipient}")
                print(f"identity for opening evidence: "
                      f"{service.core.layout.agency_dir(args.name) / 'agency.key'}")
        return 0

    return run


def register(sub: Any) -> None:
    for role, plural, org_help in (
        ("agency", "agencies", "organisation (default: the agency's name)"),
        ("reviewer", "reviewers", "the reviewer's organisation (required)"),
        ("admin", "admins", "the admin's organisation (required)"),
    ):
        group = sub.add_parser(plural, help=f"manage {plural}")
        group_sub = group.add_subparsers(dest=f"{plural}_command", required=True,
                                         metavar="COMMAND")
        article = "an" if role[0] in "aeiou" else "a"
        add = group_sub.add_parser(
            "add", help=f"create {article} {role} and print its API key once")
        add.add_argument("name")
        add.add_argument("--org", required=role != "agency", default=None, help=org_help)
        add.add_argument("--json", action="store_true", help="print JSON")
        if role == "reviewer":  # trust root v2: the reviewer signs with a key of their own
            add.add_argument("--public-key", default=None,
                             help="the reviewer's Ed25519 public key (64 hex, from "
                                  "`doorbell-review keygen`): added to the draft trust root")
        add.add_argument("--key-file", type=Path, default=None,
                         help="write the API key to this new file (0600) instead of "
                              "printing it")
        add_deployment_args(add)
        add.set_defaults(handler=guarded(f"{plural} add", _add(role)))
