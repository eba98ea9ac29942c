"""`doorbell-agent`: a thin command line. Each command group lives in its own module.

A command module exposes ``register(subparsers)``, which adds its sub-commands and sets
``handler`` (a function of the parsed args returning the exit code) on each of them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from device.errors import DoorbellError

COMMAND_MODULES: tuple[str, ...] = (
    "device.cli.agent",
    "device.cli.audit",
    "device.cli.clips",
    "device.cli.token",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doorbell-agent", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("/etc/doorbell/agent.toml"),
        help="agent configuration file (TOML)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except DoorbellError as exc:
        print(f"doorbell-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
