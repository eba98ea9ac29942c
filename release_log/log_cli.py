"""`doorbell-log`: create a log key, and serve the release log.

    doorbell-log init --dir DIR --origin ORIGIN     write DIR/log.key, print the vkey
    doorbell-log serve --dir DIR --policy FILE [--host H] [--port P] [--ready-file F]
                       [--add-token-file F]

The policy is a c2sp.org/tlog-policy file: its `log` line must be this log's key, its
`witness` lines carry the witnesses' add-checkpoint URLs, its quorum says when a
checkpoint is published. It is read again when the file changes (a witness moved).
Exit status 2 names a bad argument or file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.tlog.errors import TlogError
from protocol.tlog.note import SignatureType, Signer, parse_skey
from protocol.tlog.policy import NONE
from release_log.cosigning import Cosigner, PolicyFile
from release_log.files import write_atomically
from release_log.log_server import LogService
from release_log.serving import bind, serve
from release_log.store import LogStore, LogStoreError

KEY_FILE = "log.key"


def read_signer(path: Path, sig_type: SignatureType) -> Signer:
    """A Go-format signer key file that only its owner may read."""
    if path.stat().st_mode & 0o077:
        raise ValueError(f"{path} is readable by others: chmod 600 it")
    signer = parse_skey(path.read_text(encoding="ascii").strip())
    if signer.sig_type is not sig_type:
        raise ValueError(f"{path} holds a key of type {signer.sig_type:#04x}, not {sig_type:#04x}")
    return signer


def write_signer(path: Path, name: str, sig_type: SignatureType) -> Signer:
    if path.exists():
        raise ValueError(f"{path} exists: refusing to replace a key")
    signer = Signer(name, sig_type, Ed25519PrivateKey.generate())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (signer.skey + "\n").encode(), mode=0o600)
    return signer


def _init(args: argparse.Namespace) -> int:
    signer = write_signer(Path(args.dir) / KEY_FILE, args.origin, SignatureType.ed25519)
    print(signer.verifier.vkey)
    return 0


async def _serve(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    signer = read_signer(directory / KEY_FILE, SignatureType.ed25519)
    policy_file = PolicyFile(Path(args.policy), signer.verifier)  # checks the log line
    policy = policy_file.policy
    token = None
    if args.add_token_file:
        token = Path(args.add_token_file).read_text(encoding="utf-8").strip() or None
    store = LogStore(directory, signer)
    sock = bind(args.host, args.port)
    async with httpx.AsyncClient() as client:
        cosigner = None
        if policy.quorum != NONE:
            cosigner = Cosigner(policy_file, signer.verifier, store.tree, client)
        service = LogService(store, cosigner, add_token=token)
        ready = Path(args.ready_file) if args.ready_file else None
        await serve(service.app(), sock, ready_file=ready, background=service.run)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="doorbell-log", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the log's Ed25519 key; print its vkey")
    init.add_argument("--dir", required=True)
    init.add_argument("--origin", required=True, help="the log's origin, e.g. log.example/r")
    run = sub.add_parser("serve", help="serve the log over HTTP")
    run.add_argument("--dir", required=True)
    run.add_argument("--policy", required=True, help="tlog-policy file with witness URLs")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=0, help="0: any free port (see --ready-file)")
    run.add_argument("--ready-file", help="written with the base URL once serving")
    run.add_argument("--add-token-file", help="bearer token required by /add and /proof")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("DOORBELL_LOG_LEVEL", "WARNING"))
    try:
        if args.command == "init":
            return _init(args)
        return asyncio.run(_serve(args))
    except (OSError, ValueError, TlogError, LogStoreError) as exc:
        print(f"doorbell-log: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
