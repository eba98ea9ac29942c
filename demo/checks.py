"""What the demonstration checks on files: no plaintext on the device, playable evidence."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from demo.steps import StepFailed

# The markers the record-and-seal issue names: MP4 boxes and age secret keys.
PLAINTEXT_MARKERS: tuple[bytes, ...] = (b"ftyp", b"moof", b"mdat", b"AGE-SECRET-KEY-")


@dataclass(frozen=True, slots=True)
class ScanResult:
    files: int
    bytes: int
    hits: tuple[str, ...]  # "path: marker" for every file that holds a marker


def scan_for_plaintext(root: Path) -> ScanResult:
    """Read every file under `root` and report any that holds a plaintext marker."""
    files = 0
    total = 0
    hits: list[str] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue  # a file that vanished while we scanned (a WAL checkpoint)
        files += 1
        total += len(data)
        hits.extend(f"{path}: {m.decode()}" for m in PLAINTEXT_MARKERS if m in data)
    return ScanResult(files=files, bytes=total, hits=tuple(hits))


@dataclass(frozen=True, slots=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    duration_s: float


def probe_video(path: Path) -> VideoInfo:
    """ffprobe the first video stream. Raises StepFailed when ffprobe cannot read it."""
    proc = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise StepFailed(f"ffprobe cannot read {path}: {proc.stderr.strip()}")
    data = json.loads(proc.stdout)
    streams = data.get("streams") or []
    if not streams:
        raise StepFailed(f"{path} has no video stream")
    stream = streams[0]
    return VideoInfo(
        codec=str(stream.get("codec_name")),
        width=int(stream.get("width", 0)),
        height=int(stream.get("height", 0)),
        duration_s=float(data.get("format", {}).get("duration", 0.0)),
    )
