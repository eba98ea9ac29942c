"""`doorbell-agent`: a thin command line. Each command group lives in its own module.

A command module exposes ``register(subparsers)``, which adds its sub-commands and sets
``handler`` (a function of the parsed args returning the exit code) on each of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


DESCRIPTION = """The sealed-doorbell agent: records clips from the camera (by default
the simulated one) and seals them on the device; answers release tokens over MQTT; lets
the owner list and export the sealed clips. `run` is the daemon."""

EPILOG = """Configuration: --config FILE (default /etc/doorbell/agent.toml); every key in
docs/agent-config.md. A first run: README.md, "A first hour, by hand"."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doorbell-agent", description=DESCRIPTION,
                                     epilog=EPILOG)
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
        code = int(args.handler(args))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (`| head`): no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    except DoorbellError as exc:
        print(f"doorbell-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
