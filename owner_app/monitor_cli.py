"""`doorbell-owner --bundle DIR monitor [--state DIR] [--json]`: one pass of the release-log
monitor (`owner_app.log_monitor`) over HTTP, with its state in the owner's state dir.

State: `log-checkpoint` (the last checkpoint checked, replaced atomically),
`log-entries.jsonl` (every statement found for this doorbell, appended), and on a split
view `log-evidence-<unix time>-<name>` files holding the conflicting notes. Exit 0 when
the log is consistent (found entries printed), 1 on any failure, the reason named.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TextIO

import httpx

from owner_app.errors import OwnerError, StateError, TransportError
from owner_app.ledger import default_state_dir
from owner_app.log_monitor import Fetch, SplitView, follow, load_monitor_config
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.errors import TlogError
from protocol.tlog.note import parse_note

MAX_FETCH_BYTES = 4 * 1024 * 1024
TIMEOUT_S = 10.0


def _fetch(client: httpx.Client) -> Fetch:
    def fetch(url: str) -> bytes:
        try:
            response = client.get(url)
        except httpx.HTTPError as exc:
            raise TransportError(f"{url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise TransportError(f"{url}: HTTP {response.status_code}")
        if len(response.content) > MAX_FETCH_BYTES:
            raise TransportError(f"{url}: more than {MAX_FETCH_BYTES} bytes")
        return response.content

    return fetch


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _stored(path: Path) -> Checkpoint | None:
    if not path.exists():
        return None
    try:
        return Checkpoint.from_text(parse_note(path.read_bytes()).text)
    except (OSError, TlogError) as exc:
        raise StateError(f"{path}: {exc}") from None


def run_monitor(args: argparse.Namespace, *, out: TextIO) -> int:
    bundle_dir: Path = args.bundle
    config = load_monitor_config(bundle_dir)
    state: Path = args.state or default_state_dir(
        (bundle_dir / "device-id").read_text(encoding="ascii").strip()
        if (bundle_dir / "device-id").exists()
        else "release-log"
    )
    state.mkdir(parents=True, exist_ok=True)
    checkpoint_file = state / "log-checkpoint"
    stored = _stored(checkpoint_file)
    with httpx.Client(timeout=TIMEOUT_S) as client:
        try:
            result = follow(config, _fetch(client), stored)
        except SplitView as exc:
            stamp = int(time.time())
            for name, note in exc.evidence.items():
                _write_atomically(state / f"log-evidence-{stamp}-{name}", note)
            if checkpoint_file.exists():
                _write_atomically(
                    state / f"log-evidence-{stamp}-stored", checkpoint_file.read_bytes()
                )
            raise OwnerError(f"split view: {exc} (evidence kept in {state})") from None
    with (state / "log-entries.jsonl").open("a", encoding="utf-8") as ledger:
        for index, statement in result.found:
            ledger.write(json.dumps({"index": index, **statement.to_json()}, sort_keys=True) + "\n")
        ledger.flush()
        os.fsync(ledger.fileno())
    _write_atomically(checkpoint_file, result.note)
    for index, statement in result.found:
        if args.json:
            print(json.dumps({"index": index, **statement.to_json()}, sort_keys=True), file=out)
        else:
            court = f" court {statement.court}" if statement.court else ""
            print(
                f"entry {index}: {statement.basis}{court} window {statement.window_start} "
                f"to {statement.window_end} token sha256 {statement.token_sha256}",
                file=out,
            )
    summary = (
        f"log {config.log.origin} size {result.checkpoint.size}: {result.scanned} new "
        f"entries, {len(result.found)} for this doorbell; consistent with "
        f"{'the stored checkpoint and ' if stored else ''}witnesses "
        f"{', '.join(result.witnesses_checked) or 'none reachable'}"
    )
    if args.json:
        print(json.dumps({"summary": summary, "warnings": result.warnings}), file=out)
    else:
        print(summary, file=out)
        for warning in result.warnings:
            print(f"warning: {warning}", file=out)
    return 0
