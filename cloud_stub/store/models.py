"""The cloud stub's tables (SQLAlchemy 2, typed ``Mapped[]`` models).

Times are timezone-aware UTC datetimes stored as integers (unix seconds) by the
`UnixTime` type, so SQLite and PostgreSQL compare them the same way and nothing
depends on a database's time zone. JSON columns hold documents the service wrote
itself (the submitted request, policy reasons, manifests); they are never the only
copy of a fact that a query filters on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UnixTime(TypeDecorator[datetime]):
    """An aware UTC datetime stored as integer unix seconds."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC time")
        return int(value.timestamp())

    def process_result_value(self, value: int | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return datetime.fromtimestamp(int(value), tz=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UnixTime, dict[str, Any]: JSON, list[Any]: JSON}


class Principal(Base):
    """An agency, reviewer or admin. The API key is kept only as sha256 of its secret."""

    __tablename__ = "principals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    org: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class Device(Base):
    """The public record of an enrolled device, synced from ``devices/<id>/``."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    identity_pub: Mapped[str] = mapped_column(String(64))
    transport_recipient: Mapped[str] = mapped_column(String(200))
    owner_recipient: Mapped[str | None] = mapped_column(String(200), default=None)
    synced_at: Mapped[datetime]
    last_status: Mapped[str | None] = mapped_column(String(16), default=None)
    last_status_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set from devices/<id>/revoked.json of scope "device" (`cloud-stub devices revoke`):
    # the device gets no new token and its evidence requests are refused.
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Request(Base):
    """A request for footage as submitted, with the policy outcome and its state."""

    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    org: Mapped[str] = mapped_column(String(200))
    basis: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    devices: Mapped[list[Any]]
    window_start: Mapped[datetime | None] = mapped_column(default=None)
    window_end: Mapped[datetime | None] = mapped_column(default=None)
    body: Mapped[dict[str, Any]]
    reasons: Mapped[list[Any]]
    approvals_required: Mapped[int] = mapped_column(Integer, default=1)
    follow_up_due: Mapped[datetime | None] = mapped_column(default=None)
    follow_up_received: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_requests_agency", "agency_id"),
        Index("ix_requests_status", "status"),
    )


class Decision(Base):
    """One reviewer's approve or deny with the written reason."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    reviewer_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    org: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]

    __table_args__ = (Index("ix_decisions_request", "request_id"),)


class Token(Base):
    """A release or preservation token as issued, and what became of it."""

    __tablename__ = "tokens"

    jti: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    basis: Mapped[str] = mapped_column(String(16))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    hold_until: Mapped[datetime | None] = mapped_column(default=None)
    size_cap: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(24))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    jws: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_tokens_device_seq"),
        Index("ix_tokens_request", "request_id"),
    )


class SeqCounter(Base):
    """The last ``seq`` allocated per device; only ever incremented inside a transaction."""

    __tablename__ = "seq_counters"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class EscrowedEpoch(Base):
    """An epoch key sealed by the device to the cloud's escrow recipient."""

    __tablename__ = "escrowed_epochs"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    epoch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    start: Mapped[datetime]
    end: Mapped[datetime]
    recipient: Mapped[str] = mapped_column(String(200))
    sealed: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]

    __table_args__ = (Index("ix_epochs_device_time", "device_id", "start", "end"),)


class Upload(Base):
    """A resumable upload in progress: the staging file's size is the truth, this is its log."""

    __tablename__ = "uploads"

    jti: Mapped[str] = mapped_column(ForeignKey("tokens.jti"), primary_key=True)
    clip_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Manifest(Base):
    """A device-signed evidence manifest, accepted once per token."""

    __tablename__ = "manifests"

    jti: Mapped[str] = mapped_column(ForeignKey("tokens.jti"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128))
    jws: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    accepted_at: Mapped[datetime]


class EvidenceFile(Base):
    """One content-addressed file under the evidence directory."""

    __tablename__ = "evidence_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime]


class CustodyRecord(Base):
    """Chain of custody for one clip released under one token."""

    __tablename__ = "custody_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    jti: Mapped[str] = mapped_column(ForeignKey("tokens.jti"))
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    device_id: Mapped[str] = mapped_column(String(128))
    clip_id: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(ForeignKey("evidence_files.sha256"))
    bytes: Mapped[int] = mapped_column(BigInteger)
    clip_start: Mapped[datetime]
    clip_end: Mapped[datetime]
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    upload_started_at: Mapped[datetime]
    received_at: Mapped[datetime]
    accepted_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("jti", "clip_id", name="uq_custody_jti_clip"),
        Index("ix_custody_request", "request_id"),
    )


class OwnerNotice(Base):
    """A notice the device published to its owner about a release."""

    __tablename__ = "owner_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(128))
    jti: Mapped[str] = mapped_column(String(36))
    released_at: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("device_id", "jti", name="uq_notice_device_jti"),)


class AuditRow(Base):
    """One entry of the hash-chained audit log, appended under a serializing lock."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditLock(Base):
    """A single row that every audit append locks, so appends are serialized everywhere."""

    __tablename__ = "audit_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    head_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))


class ConsoleSessionRow(Base):
    """A review console session (docs/adr/0015-review-console.md, section 3). The browser
    holds the session's secret id; only its sha256 is kept, so a copy of the store signs
    nobody in. ``revoked_at`` is set by sign-out (and a disabled key); an expired or
    revoked row is refused and later deleted."""

    __tablename__ = "console_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(64))
    principal_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime]
    last_seen: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("ix_console_sessions_principal", "principal_id"),
        Index("ix_console_sessions_last_seen", "last_seen"),
    )


class ConsoleSignInRow(Base):
    """One sign-in attempt at the review console within the limiter's window, or (with
    ``refused``) the mark that a client over the limit was reported in this window
    (docs/adr/0015-review-console.md, section 4). Rows older than the window are deleted
    at the next attempt, so every process serving the store counts the same attempts."""

    __tablename__ = "console_sign_ins"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    refused: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_console_sign_ins_client", "client", "at"),
        Index("ix_console_sign_ins_at", "at"),
    )
