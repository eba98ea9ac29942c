"""`cloud-stub`: a thin operator command line. Each command group lives in its own module.

A command module exposes ``register(subparsers)``, which adds its sub-commands and sets
``handler`` (a function of the parsed args returning the exit code) on each of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

DESCRIPTION = """The cloud side of sealed-doorbell: set up a deployment (init), enrol
doorbells, add agencies, reviewers and admins, run the service (serve), and review,
approve or deny requests for footage. Most commands act on a deployment directory:
give it with --deployment DIR."""

EPILOG = """A first run: cloud-stub init ./dep, then cloud-stub devices enroll ... --deployment
./dep, then cloud-stub serve --deployment ./dep (README.md, "A first hour, by hand").
Codes and states: docs/states-and-codes.md."""

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
    parser = argparse.ArgumentParser(prog="cloud-stub", description=DESCRIPTION, epilog=EPILOG)
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
    except BrokenPipeError:
        return quiet_broken_pipe()
    except KeyboardInterrupt:
        return 130
    return code


def quiet_broken_pipe() -> int:
    """The reader of our output left (`| head`): no traceback, no second error at exit;
    the shell's exit status for SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


if __name__ == "__main__":
    sys.exit(main())
