"""The reviewer's signing key: one Ed25519 key, 0600, under the user's config directory."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import KeyFormatError
from protocol.keys import private_key_from_pem, private_key_to_pem


class ReviewKeyError(Exception):
    """The key file cannot be made or read; the message names the file and the problem."""


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/doorbell-review/reviewer.key`` (default ``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "doorbell-review" / "reviewer.key"


def generate(path: Path) -> Ed25519PrivateKey:
    """Create a new key at `path`, 0600 from its creation; never overwrite one."""
    key = Ed25519PrivateKey.generate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise ReviewKeyError(f"{path} exists already; refusing to overwrite a key") from None
    except OSError as exc:
        raise ReviewKeyError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        os.write(fd, private_key_to_pem(key))
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load(path: Path) -> Ed25519PrivateKey:
    """Read the key; refuse one that others could read."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise ReviewKeyError(f"cannot read {path}: {exc.strerror} (run `doorbell-review "
                             "keygen` first)") from exc
    if mode & 0o077:
        raise ReviewKeyError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        return private_key_from_pem(data)
    except KeyFormatError as exc:
        raise ReviewKeyError(f"{path}: {exc}") from exc
