"""`doorbell-witness`: one transparency-log witness, its own key and SQLite state.

    doorbell-witness init --dir DIR --name NAME    write DIR/witness.key, print its vkey
    doorbell-witness serve --dir DIR --log VKEY [--log VKEY ...] [--host H] [--port P]
                           [--ready-file F]

`--log` names a log this witness follows by its checkpoint vkey (the key name is the
log's origin). State lives in DIR/state.sqlite. Exit status 2 names a bad argument.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from protocol.tlog.errors import TlogError
from protocol.tlog.note import SignatureType, Verifier, parse_vkey
from release_log.log_cli import read_signer, write_signer
from release_log.serving import bind, serve
from release_log.witness_server import WitnessService
from release_log.witness_state import WitnessState

KEY_FILE = "witness.key"
STATE_FILE = "state.sqlite"


def _logs(vkeys: list[str]) -> dict[str, list[Verifier]]:
    logs: dict[str, list[Verifier]] = {}
    for vkey in vkeys:
        verifier = parse_vkey(vkey)
        if verifier.sig_type is not SignatureType.ed25519:
            raise ValueError(f"{vkey}: a log key has signature type 0x01")
        logs.setdefault(verifier.name, []).append(verifier)
    return logs


async def _serve(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    signer = read_signer(directory / KEY_FILE, SignatureType.cosignature_v1)
    service = WitnessService(signer, _logs(args.log), WitnessState(directory / STATE_FILE))
    sock = bind(args.host, args.port)
    ready = Path(args.ready_file) if args.ready_file else None
    try:
        await serve(service.app(), sock, ready_file=ready)
    finally:
        service.state.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="doorbell-witness", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the witness's key; print its vkey")
    init.add_argument("--dir", required=True)
    init.add_argument("--name", required=True, help="the witness's name, e.g. w1.example")
    run = sub.add_parser("serve", help="serve add-checkpoint over HTTP")
    run.add_argument("--dir", required=True)
    run.add_argument("--log", action="append", required=True, help="a followed log's vkey")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=0)
    run.add_argument("--ready-file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("DOORBELL_LOG_LEVEL", "WARNING"))
    try:
        if args.command == "init":
            path = Path(args.dir) / KEY_FILE
            print(write_signer(path, args.name, SignatureType.cosignature_v1).verifier.vkey)
            return 0
        return asyncio.run(_serve(args))
    except (OSError, ValueError, TlogError) as exc:
        print(f"doorbell-witness: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
