"""Typed MQTT payloads of the v1 wire contract (docs/architecture.md, "MQTT").

Each payload is a UTF-8 JSON object with ``"v": 1``. Every message type has a frozen
dataclass with `to_bytes()` and a strict `parse_*` function that refuses oversized
input, unknown or missing members, and ill-typed values with a `MessageError` that
names the problem. Nothing here publishes or subscribes.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import pyrage

from protocol import _schema as s
from protocol.errors import MessageError
from protocol.keys import canonical_json
from protocol.timefmt import format_time
from protocol.token_claims import CaseRef, Window
from protocol.token_keys import AGE_MAGIC, EPOCH_ID_PATTERN
from protocol.trust_root import BASES

printable = s.printable  # text for a message field, with what `string` refuses made '?'

MESSAGE_VERSION: Final = 1
MAX_ESCROW_BYTES: Final = 16 * 1024
MAX_ACK_BYTES: Final = 1024
MAX_RESULT_BYTES: Final = 256 * 1024
MAX_STATUS_BYTES: Final = 8 * 1024
MAX_NOTICE_BYTES: Final = 256 * 1024
MAX_CLIP_IDS: Final = 4096
MAX_DETAIL: Final = 1024
MAX_HEALTH_ITEMS: Final = 64
_CODE = re.compile(r"[a-z0-9_]{1,64}")

HealthValue = str | int | float | bool | None


class ResultStatus(StrEnum):
    uploaded = "uploaded"
    rejected = "rejected"
    deferred = "deferred"
    preserved = "preserved"


class DeviceState(StrEnum):
    online = "online"
    offline = "offline"


def _load(data: bytes, cap: int, what: str) -> Any:
    if not isinstance(data, bytes | bytearray):
        raise MessageError(f"{what} payload must be bytes")
    if len(data) > cap:
        raise MessageError(f"{what} payload is {len(data)} bytes, the cap is {cap}")
    try:
        return s.loads_strict(bytes(data))
    except s.SchemaError as exc:
        raise MessageError(f"{what} payload: {exc}") from None


def _version(item: Mapping[str, Any], what: str) -> None:
    if item["v"] != MESSAGE_VERSION or isinstance(item["v"], bool):
        raise s.SchemaError(f"{what}: v must be {MESSAGE_VERSION}")


def _epoch(value: Any, name: str = "epoch") -> str:
    if not isinstance(value, str) or EPOCH_ID_PATTERN.fullmatch(value) is None:
        raise s.SchemaError(f"{name} must be '<unix seconds>-<8 hex>'")
    return value


def _clip_ids(value: Any) -> tuple[str, ...]:
    ids = tuple(s.identifier(c, "clips[]") for c in s.array(value, "clips", max_len=MAX_CLIP_IDS))
    if len(set(ids)) != len(ids):
        raise s.SchemaError("clips lists a clip twice")
    return ids


def _recipient(value: Any, name: str) -> str:
    text = s.string(value, name, max_len=128)
    try:
        pyrage.x25519.Recipient.from_str(text)
    except pyrage.RecipientError:
        raise s.SchemaError(f"{name} is not an age X25519 recipient") from None
    return text


def _checked(build: Callable[[], dict[str, Any]], parser: Callable[[bytes], object]) -> bytes:
    """Serialize and re-parse, so that a sender can never emit what a receiver refuses.

    Raises MessageError (also for naive datetimes and values JSON cannot hold).
    """
    try:
        data = canonical_json(build())
    except (ValueError, TypeError) as exc:
        raise MessageError(f"cannot serialize: {exc}") from None
    parser(data)
    return data


# --- escrow (device -> cloud) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EscrowMessage:
    """An epoch's private key sealed to the cloud's escrow recipient.

    `sealed` is standard base64 of an age file whose plaintext is the epoch's
    ``AGE-SECRET-KEY-1...`` line; `recipient` is the epoch's public recipient.
    """

    device: str
    epoch: str
    start: datetime
    end: datetime
    recipient: str
    sealed: str

    def to_bytes(self) -> bytes:
        """Raises MessageError when the message would be refused by `parse_escrow`."""
        return _checked(
            lambda: {
                "v": MESSAGE_VERSION,
                "device": self.device,
                "epoch": self.epoch,
                "start": format_time(self.start),
                "end": format_time(self.end),
                "recipient": self.recipient,
                "sealed": self.sealed,
            },
            parse_escrow,
        )


def parse_escrow(data: bytes) -> EscrowMessage:
    """Raises MessageError."""
    raw = _load(data, MAX_ESCROW_BYTES, "escrow")
    try:
        item = s.obj(
            raw,
            "escrow",
            frozenset({"v", "device", "epoch", "start", "end", "recipient", "sealed"}),
        )
        _version(item, "escrow")
        start, end = s.instant(item["start"], "start"), s.instant(item["end"], "end")
        if end <= start:
            raise s.SchemaError("escrow end must be after its start")
        sealed = s.string(item["sealed"], "sealed", max_len=MAX_ESCROW_BYTES)
        try:
            blob = base64.b64decode(sealed.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise s.SchemaError("sealed must be standard padded base64") from None
        if not blob.startswith(AGE_MAGIC):
            raise s.SchemaError("sealed does not hold an age v1 file")
        return EscrowMessage(
            device=s.string(item["device"], "device", max_len=128),
            epoch=_epoch(item["epoch"]),
            start=start,
            end=end,
            recipient=_recipient(item["recipient"], "recipient"),
            sealed=sealed,
        )
    except s.SchemaError as exc:
        raise MessageError(str(exc)) from None


# --- escrow-ack (cloud -> device) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EscrowAck:
    """The cloud has stored the escrowed key of `epoch`; the device may drop the blob."""

    epoch: str

    def to_bytes(self) -> bytes:
        """Raises MessageError for an invalid epoch id."""
        return _checked(lambda: {"v": MESSAGE_VERSION, "epoch": self.epoch}, parse_escrow_ack)


def parse_escrow_ack(data: bytes) -> EscrowAck:
    """Raises MessageError."""
    raw = _load(data, MAX_ACK_BYTES, "escrow-ack")
    try:
        item = s.obj(raw, "escrow-ack", frozenset({"v", "epoch"}))
        _version(item, "escrow-ack")
        return EscrowAck(epoch=_epoch(item["epoch"]))
    except s.SchemaError as exc:
        raise MessageError(str(exc)) from None


# --- result (device -> cloud) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultMessage:
    """The outcome of one token. `reason` is a rejection code (or another short
    snake_case code for upload failures), empty when the token was executed."""

    jti: str
    status: ResultStatus
    reason: str = ""
    detail: str = ""
    clips: tuple[str, ...] = ()
    # the sha256 of the token bytes this result judged ("" from a device older than the
    # member); the cloud believes a result only for bytes it issued (docs/protocol.md)
    token_sha256: str = ""

    def to_bytes(self) -> bytes:
        """Raises MessageError when the message would be refused by `parse_result`."""

        def build() -> dict[str, Any]:
            out: dict[str, Any] = {
                "v": MESSAGE_VERSION,
                "jti": self.jti,
                "status": str(self.status),
                "reason": self.reason,
                "detail": self.detail[:MAX_DETAIL],
                "clips": list(self.clips),
            }
            if self.token_sha256:
                out["token_sha256"] = self.token_sha256
            return out

        return _checked(build, parse_result)


def parse_result(data: bytes) -> ResultMessage:
    """Raises MessageError."""
    raw = _load(data, MAX_RESULT_BYTES, "result")
    try:
        item = s.obj(raw, "result", frozenset({"v", "jti", "status", "reason", "detail", "clips"}),
                     frozenset({"token_sha256"}))
        _version(item, "result")
        try:
            status = ResultStatus(item["status"])
        except ValueError:
            raise s.SchemaError(
                f"status must be one of {', '.join(m.value for m in ResultStatus)}"
            ) from None
        reason = s.string(item["reason"], "reason", max_len=64, allow_empty=True)
        if reason and _CODE.fullmatch(reason) is None:
            raise s.SchemaError("reason must be a snake_case code")
        if status is ResultStatus.rejected and not reason:
            raise s.SchemaError("a rejected result must name its reason")
        return ResultMessage(
            jti=s.string(item["jti"], "jti", max_len=128),
            status=status,
            reason=reason,
            detail=s.string(item["detail"], "detail", max_len=MAX_DETAIL, allow_empty=True),
            clips=_clip_ids(item["clips"]),
            token_sha256=(s.hex64(item["token_sha256"], "token_sha256")
                          if "token_sha256" in item else ""),
        )
    except s.SchemaError as exc:
        raise MessageError(str(exc)) from None


# --- status (device -> all, retained) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """`online`/`offline` plus flat health figures (snake_case names, scalar values)."""

    state: DeviceState
    health: Mapping[str, HealthValue] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Raises MessageError for reserved or ill-formed health names or values."""
        payload: dict[str, Any] = {"v": MESSAGE_VERSION, "state": str(self.state)}
        for name in self.health:
            if name in payload:
                raise MessageError(f"health item {name!r} uses a reserved name")
        payload.update(self.health)
        return _checked(lambda: payload, parse_status)


LAST_WILL: Final = StatusMessage(state=DeviceState.offline)


def parse_status(data: bytes) -> StatusMessage:
    """Raises MessageError."""
    raw = _load(data, MAX_STATUS_BYTES, "status")
    try:
        if not isinstance(raw, dict):
            raise s.SchemaError("status must be a JSON object")
        item = s.obj(raw, "status", frozenset({"v", "state"}), frozenset(raw) - {"v", "state"})
        _version(item, "status")
        try:
            state = DeviceState(item["state"])
        except ValueError:
            raise s.SchemaError("state must be 'online' or 'offline'") from None
        health: dict[str, HealthValue] = {}
        extra = {k: v for k, v in item.items() if k not in ("v", "state")}
        if len(extra) > MAX_HEALTH_ITEMS:
            raise s.SchemaError(f"status carries more than {MAX_HEALTH_ITEMS} health items")
        for name, value in extra.items():
            if _CODE.fullmatch(name) is None:
                raise s.SchemaError(f"health item {name!r:.40} is not a snake_case name")
            if isinstance(value, str):
                s.string(value, name, max_len=256, allow_empty=True)
            elif isinstance(value, float) and not math.isfinite(value):
                raise s.SchemaError(f"health item {name} is not finite")
            elif value is not None and not isinstance(value, int | float | bool):
                raise s.SchemaError(f"health item {name} must be a scalar")
            health[name] = value
        return StatusMessage(state=state, health=health)
    except s.SchemaError as exc:
        raise MessageError(str(exc)) from None


# --- notice (device -> owner, retained) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoticeMessage:
    """What the owner learns of a release: which token, basis, case, window and clips."""

    jti: str
    basis: str
    case: CaseRef
    window: Window
    clips: tuple[str, ...]
    released_at: datetime

    def to_bytes(self) -> bytes:
        """Raises MessageError when the message would be refused by `parse_notice`."""
        return _checked(
            lambda: {
                "v": MESSAGE_VERSION,
                "jti": self.jti,
                "basis": self.basis,
                "case": self.case.to_payload(),
                "window": self.window.to_payload(),
                "clips": list(self.clips),
                "released_at": format_time(self.released_at),
            },
            parse_notice,
        )


def parse_notice(data: bytes) -> NoticeMessage:
    """Raises MessageError."""
    raw = _load(data, MAX_NOTICE_BYTES, "notice")
    try:
        item = s.obj(
            raw,
            "notice",
            frozenset({"v", "jti", "basis", "case", "window", "clips", "released_at"}),
        )
        _version(item, "notice")
        if item["basis"] not in BASES:
            raise s.SchemaError(f"basis must be one of {', '.join(BASES)}")
        return NoticeMessage(
            jti=s.identifier(item["jti"], "jti"),
            basis=item["basis"],
            case=CaseRef.from_payload(item["case"]),
            window=Window.from_payload(item["window"]),
            clips=_clip_ids(item["clips"]),
            released_at=s.instant(item["released_at"], "released_at"),
        )
    except s.SchemaError as exc:
        raise MessageError(str(exc)) from None
