"""What the demonstration checks on files: no plaintext on the device, playable evidence."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from demo.steps import StepFailed

# What plaintext on the device would look like: the MP4 boxes every clip is made of,
# and an age secret key.
MP4_BOXES: tuple[bytes, ...] = (b"ftyp", b"moof", b"mdat")
SECRET_MARKERS: tuple[bytes, ...] = (b"AGE-SECRET-KEY-",)
PLAINTEXT_MARKERS: tuple[bytes, ...] = MP4_BOXES + SECRET_MARKERS
# An MP4 box starts with its 32-bit big-endian size, then its type. The four letters
# alone also turn up in base64 text (a token's sealed `keys`, a signature) in a database
# page; text before them reads as a size of at least 0x20202020 bytes (512 MiB and
# more), far beyond any box of a doorbell clip, so a box is its type after a size below
# this (or 0, "to the end of the file", or 1, "a 64-bit size follows").
MAX_PLAUSIBLE_BOX = 0x2000_0000


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
        hits.extend(f"{path}: {m.decode()}" for m in MP4_BOXES if has_mp4_box(data, m))
        hits.extend(f"{path}: {m.decode()}" for m in SECRET_MARKERS if m in data)
    return ScanResult(files=files, bytes=total, hits=tuple(hits))


def has_mp4_box(data: bytes, box: bytes) -> bool:
    """Whether `data` holds the 4-letter type `box` where an MP4 box would have it:
    after a plausible size (MAX_PLAUSIBLE_BOX), or at the very start of the data."""
    at = data.find(box)
    while at != -1:
        if at < 4:
            return True
        size = int.from_bytes(data[at - 4:at], "big")
        if size in (0, 1) or 8 <= size < MAX_PLAUSIBLE_BOX:
            return True
        at = data.find(box, at + 1)
    return False


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
