"""`cloud-stub`: a thin operator command line. Each command group lives in its own module.

A command module exposes ``register(subparsers)``, which adds its sub-commands and sets
``handler`` (a function of the parsed args returning the exit code) on each of them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "cloud_stub.cli.provision",
    "cloud_stub.cli.serve",
    "cloud_stub.cli.principals",
    "cloud_stub.cli.trust",
    "cloud_stub.cli.requests",
    "cloud_stub.cli.devices",
    "cloud_stub.cli.audit",
    "cloud_stub.cli.court",
    "cloud_stub.cli.report",
    "cloud_stub.cli.store",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloud-stub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
