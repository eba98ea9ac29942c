"""Helpers the operator commands share: opening the service, tables, JSON, errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cloud_stub.errors import CloudError, ConfigError
from cloud_stub.services.cloud_service import CloudService


def add_deployment_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deployment", type=Path, default=Path("."),
                        help="deployment directory (default: current directory)")
    parser.add_argument("--store-url", default=None,
                        help="database URL (default: cloud/store-url, else SQLite in cloud/)")


def check_deployment_dir(directory: Path) -> None:
    """Raise ConfigError with the fix when `directory` holds no deployment.toml (most
    often: --deployment was left out and the current directory is not the deployment)."""
    if not (directory / "deployment.toml").is_file():
        given = "the current directory" if directory == Path(".") else str(directory)
        raise ConfigError(
            f"{given} is not a deployment directory (it has no deployment.toml): give "
            "--deployment DIR, the directory `cloud-stub init DIR` created"
        )


def open_service(args: argparse.Namespace) -> CloudService:
    check_deployment_dir(args.deployment)
    return CloudService.open(args.deployment, store_url=args.store_url)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table; an empty table says so."""
    if not rows:
        print("(none)")
        return
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def guarded(name: str, fn: Callable[[argparse.Namespace], int]
            ) -> Callable[[argparse.Namespace], int]:
    """Run a command; print a `CloudError` as ``cloud-stub NAME: message`` and exit 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except CloudError as exc:
            print(f"cloud-stub {name}: {exc.message} [{exc.code}]", file=sys.stderr)
            return 1

    return run


def subcommands(sub: Any, name: str, help_text: str) -> Any:
    """The sub-command group ``name``, created or, when another module made it, reused."""
    existing = sub.choices.get(name)
    if existing is None:
        parser = sub.add_parser(name, help=help_text)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
    for action in existing._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return existing.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
