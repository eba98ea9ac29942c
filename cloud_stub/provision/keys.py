"""Key generation and durable file writing for provisioning.

Private files are created 0600 from their first byte: the temporary file is opened with
``O_CREAT | O_EXCL`` and mode 0600 in the target's directory, filled, fsync'd and moved
into place with `os.replace`, then the directory is fsync'd. No private file is ever
chmod'ed after the fact, so there is no instant at which another user could open it.
Public files go through the same path with mode 0644.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.provision.errors import AlreadyExists, WriteError
from protocol.keys import private_key_to_pem, public_key_hex

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
PRIVATE_DIR_MODE = 0o700
PUBLIC_DIR_MODE = 0o755


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int, overwrite: bool = False) -> None:
    """Write `data` to `path` atomically with `mode` set at creation.

    Raises AlreadyExists when `path` exists and `overwrite` is false (checked before any
    write; a concurrent creator still loses nothing because the final step is a rename),
    and WriteError for any OSError (the temporary file is removed).
    """
    if not overwrite and (path.exists() or path.is_symlink()):
        raise AlreadyExists(f"{path} exists already; refusing to overwrite it")
    directory = path.parent
    temp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, mode & PRIVATE_MODE)
        try:
            if mode != mode & PRIVATE_MODE:
                # Created at most 0600 (the umask can only narrow it); a public file is
                # widened to its final mode while it is still empty.
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        _fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc


def write_private(path: Path, data: bytes) -> None:
    """A secret (private key, age identity, tarball with keys): 0600 from creation."""
    write_atomic(path, data, mode=PRIVATE_MODE)


def write_public(path: Path, data: bytes) -> None:
    """A public file (certificate, recipient, public key, config): 0644."""
    write_atomic(path, data, mode=PUBLIC_MODE)


def check_empty_dir(path: Path, what: str) -> None:
    """Refuse a `path` that is a symlink, not a directory, or a directory with something
    in it, so that `what` (a bundle, a deployment) never overwrites anything.

    Raises AlreadyExists.
    """
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise AlreadyExists(f"{path} exists and is not a directory; refusing to overwrite it")
    if path.is_dir() and any(path.iterdir()):
        raise AlreadyExists(f"{path} is not empty; refusing to overwrite {what}")


def make_dir(path: Path, *, mode: int = PUBLIC_DIR_MODE, exist_ok: bool = True) -> None:
    """Create a directory (and its parents) with `mode`.

    Raises AlreadyExists when it exists and `exist_ok` is false, WriteError on OSError.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, mode & PRIVATE_DIR_MODE)
        if mode != mode & PRIVATE_DIR_MODE:
            os.chmod(path, mode)  # a public directory: widen it once it exists
    except FileExistsError as exc:
        if not exist_ok or not path.is_dir():
            raise AlreadyExists(f"{path} exists already; refusing to overwrite it") from exc
    except OSError as exc:
        raise WriteError(f"cannot create directory {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True, slots=True)
class SignerKey:
    """An Ed25519 key pair as it is written: PKCS#8 PEM private, hex public."""

    private: Ed25519PrivateKey

    @property
    def pem(self) -> bytes:
        return private_key_to_pem(self.private)

    @property
    def public_hex(self) -> str:
        return public_key_hex(self.private)


def new_signer_key() -> SignerKey:
    return SignerKey(Ed25519PrivateKey.generate())


@dataclass(frozen=True, slots=True)
class AgeKeyPair:
    """An age X25519 identity (``AGE-SECRET-KEY-1...``) and its recipient (``age1...``)."""

    identity: str
    recipient: str

    @property
    def identity_file(self) -> bytes:
        return f"{self.identity}\n".encode("ascii")

    @property
    def recipient_file(self) -> bytes:
        return f"{self.recipient}\n".encode("ascii")


def new_age_key() -> AgeKeyPair:
    identity = pyrage.x25519.Identity.generate()
    return AgeKeyPair(identity=str(identity), recipient=str(identity.to_public()))


def is_age_recipient(value: str) -> bool:
    """True when `value` parses as an age X25519 recipient (``age1...``)."""
    try:
        pyrage.x25519.Recipient.from_str(value)
    except pyrage.RecipientError:
        return False
    return True
