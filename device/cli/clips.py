"""`doorbell-agent clips list [--json]` and `clips export --since T --until T DIR`.

Both read the vault's index beside a running agent (SQLite WAL allows it) and never
open, decrypt or change a clip. `export` copies the sealed age files of the clips that
overlap the window, checks each copy's SHA-256 against the index, and writes
``clips.json`` beside them; the owner opens the files with ``age -d -i owner.key``.
Exit 0 on success, 1 when a clip's file is missing or does not match the index, 2 on a
usage error (bad time, no vault).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.config import load_config

# The vault (age, cryptography) is imported inside the commands: every command, `run`
# included, builds this module's parser.
if TYPE_CHECKING:
    from device.vault.index import ClipIndex, ClipRecord


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("clips", help="list or export the sealed clips")
    sub = group.add_subparsers(dest="clips_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="list the clips in the index, oldest first")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--since", type=_when, default=None, help="RFC 3339 time (UTC)")
    listing.add_argument("--until", type=_when, default=None, help="RFC 3339 time (UTC)")
    listing.set_defaults(handler=_list)
    export = sub.add_parser("export", help="copy the sealed files of a time window to DIR")
    export.add_argument("--since", type=_when, required=True, help="RFC 3339 time (UTC)")
    export.add_argument("--until", type=_when, required=True, help="RFC 3339 time (UTC)")
    export.add_argument("directory", type=Path, metavar="DIR")
    export.set_defaults(handler=_export)


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. Z for UTC): {text!r}")
    return value.astimezone(UTC)


def _open_index(args: argparse.Namespace) -> tuple[ClipIndex, Path] | None:
    from device.vault.index import ClipIndex
    from device.vault.store import vault_root

    root = vault_root(load_config(args.config))
    if not (root / "index.sqlite").is_file():
        print(f"doorbell-agent clips: no vault index at {root}", file=sys.stderr)
        return None
    return ClipIndex(root / "index.sqlite"), root / "clips"


def describe(clip: ClipRecord) -> dict[str, Any]:
    """The JSON form of a clip, as `clips list --json` and export's clips.json write it."""
    return {
        "id": clip.id,
        "start": clip.start.isoformat().replace("+00:00", "Z"),
        "end": None if clip.end is None else clip.end.isoformat().replace("+00:00", "Z"),
        "state": clip.state.value,
        "complete": clip.complete,
        "bytes": clip.bytes,
        "sha256": clip.sha256,
        "epoch": clip.epoch_id,
        "events": [
            {"kind": e.kind, "at": e.at.isoformat().replace("+00:00", "Z")} for e in clip.events
        ],
        "hold_until": None if clip.hold_until is None else clip.hold_until.isoformat(),
        "pending_upload": clip.pending_upload,
    }


def _list(args: argparse.Namespace) -> int:
    opened = _open_index(args)
    if opened is None:
        return 2
    index, _clips_dir = opened
    try:
        clips = index.clips(args.since, args.until)
    finally:
        index.close()
    if args.json:
        print(json.dumps([describe(c) for c in clips], indent=2))
        return 0
    if clips:
        width = max(len(c.id) for c in clips)
        print(f"{'CLIP':<{width}}  {'START (UTC)':<20}  {'LENGTH':>8}  {'BYTES':>11}  "
              f"{'STATE':<9}  EVENTS")
    for clip in clips:
        length = "-" if clip.end is None else f"{(clip.end - clip.start).total_seconds():.1f}s"
        events = ",".join(e.kind for e in clip.events) or "-"
        print(
            f"{clip.id:<{width}}  {clip.start:%Y-%m-%d %H:%M:%S}Z  {length:>8}  {clip.bytes:>11}  "
            f"{clip.state.value:<9}  {events}"
        )
    print(count(len(clips), "clip"))
    return 0


def count(n: int, noun: str) -> str:
    """'1 clip', '2 clips', '0 clips'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _copy_verified(source: Path, target: Path, sha256: str | None) -> bool:
    """Copy atomically; True when the copy's SHA-256 matches the index."""
    hasher = hashlib.sha256()
    tmp = target.with_name(f".{target.name}.tmp")
    with source.open("rb") as reader, tmp.open("wb") as writer:
        while block := reader.read(1024 * 1024):
            hasher.update(block)
            writer.write(block)
        writer.flush()
        os.fsync(writer.fileno())
    if hasher.hexdigest() != sha256:
        tmp.unlink()
        return False
    os.replace(tmp, target)
    return True


def _export(args: argparse.Namespace) -> int:
    from device.vault.clipfile import sealed_file
    from device.vault.index import ClipState

    if args.until <= args.since:
        print("doorbell-agent clips export: --until must be after --since", file=sys.stderr)
        return 2
    opened = _open_index(args)
    if opened is None:
        return 2
    index, clips_dir = opened
    try:
        clips = [
            c for c in index.clips(args.since, args.until) if c.state is not ClipState.RECORDING
        ]
    finally:
        index.close()
    out: Path = args.directory
    out.mkdir(parents=True, exist_ok=True)
    exported: list[dict[str, Any]] = []
    problems: list[dict[str, str]] = []
    for clip in clips:
        source = sealed_file(clips_dir, clip.id)
        try:
            ok = _copy_verified(source, out / f"{clip.id}.age", clip.sha256)
        except OSError as exc:
            problems.append({"id": clip.id, "problem": f"cannot copy: {exc.strerror}"})
            continue
        if not ok:
            problems.append({"id": clip.id, "problem": "file does not match its index sha256"})
            continue
        exported.append(describe(clip) | {"file": f"{clip.id}.age"})
    listing = {
        "since": args.since.isoformat().replace("+00:00", "Z"),
        "until": args.until.isoformat().replace("+00:00", "Z"),
        "clips": exported,
        "problems": problems,
        "open_with": "age -d -i owner.key <file>",
    }
    (out / "clips.json").write_text(json.dumps(listing, indent=2) + "\n", encoding="utf-8")
    failed = f", {len(problems)} failed" if problems else ""
    print(f"exported {count(len(exported), 'clip')} to {out}{failed}")
    for problem in problems:
        print(f"clips export: {problem['id']}: {problem['problem']}", file=sys.stderr)
    return 1 if problems else 0
