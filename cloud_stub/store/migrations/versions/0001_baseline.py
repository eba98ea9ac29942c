"""Baseline: the store's schema as the last release before migrations made it (fec2406).

Creates every table, index and constraint exactly as `Base.metadata.create_all` did at
that commit, and the audit head row (`audit_lock`, at the genesis hash) that
`Store.create_schema` added. Times are BIGINT unix seconds (the models' `UnixTime`),
written here as the plain type so the revision never changes with the models. A store
made by that release (it has these tables and no `alembic_version`) is stamped at this
revision instead of running it (`cloud_stub/store/migrate.py`, ADR 0016).

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# cloud_stub.domain.audit_chain.GENESIS_HASH, frozen: sha256(b"sealed-doorbell/audit/genesis/v1")
GENESIS_HASH = "19ff16cf1e1c6c521f074074b68ee288e2c42f4b23744e2a0b7778b710226dd7"


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "audit_lock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("identity_pub", sa.String(length=64), nullable=False),
        sa.Column("transport_recipient", sa.String(length=200), nullable=False),
        sa.Column("owner_recipient", sa.String(length=200), nullable=True),
        sa.Column("synced_at", sa.BigInteger(), nullable=False),
        sa.Column("last_status", sa.String(length=16), nullable=True),
        sa.Column("last_status_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "escrowed_epochs",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("epoch_id", sa.String(length=64), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "epoch_id"),
    )
    op.create_index(
        "ix_epochs_device_time", "escrowed_epochs", ["device_id", "start", "end"], unique=False
    )
    op.create_table(
        "evidence_files",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("stored_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "owner_notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("jti", sa.String(length=36), nullable=False),
        sa.Column("released_at", sa.String(length=40), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "jti", name="uq_notice_device_jti"),
    )
    op.create_table(
        "principals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("org", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "seq_counters",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=36), nullable=False),
        sa.Column("org", sa.String(length=200), nullable=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("devices", sa.JSON(), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=True),
        sa.Column("window_end", sa.BigInteger(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("follow_up_due", sa.BigInteger(), nullable=True),
        sa.Column("follow_up_received", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_requests_agency", "requests", ["agency_id"], unique=False)
    op.create_index("ix_requests_status", "requests", ["status"], unique=False)
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("reviewer_id", sa.String(length=36), nullable=False),
        sa.Column("org", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"],
            ["principals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_decisions_request", "decisions", ["request_id"], unique=False)
    op.create_table(
        "tokens",
        sa.Column("jti", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("window_end", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("hold_until", sa.BigInteger(), nullable=True),
        sa.Column("size_cap", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
        ),
        sa.PrimaryKeyConstraint("jti"),
        sa.UniqueConstraint("device_id", "seq", name="uq_tokens_device_seq"),
    )
    op.create_index("ix_tokens_request", "tokens", ["request_id"], unique=False)
    op.create_table(
        "custody_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("jti", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("clip_id", sa.String(length=128), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("clip_start", sa.BigInteger(), nullable=False),
        sa.Column("clip_end", sa.BigInteger(), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("upload_started_at", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("accepted_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["jti"],
            ["tokens.jti"],
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
        ),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["evidence_files.sha256"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("jti", "clip_id", name="uq_custody_jti_clip"),
    )
    op.create_index("ix_custody_request", "custody_records", ["request_id"], unique=False)
    op.create_table(
        "manifests",
        sa.Column("jti", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("accepted_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["jti"],
            ["tokens.jti"],
        ),
        sa.PrimaryKeyConstraint("jti"),
    )
    op.create_table(
        "uploads",
        sa.Column("jti", sa.String(length=36), nullable=False),
        sa.Column("clip_id", sa.String(length=128), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["jti"],
            ["tokens.jti"],
        ),
        sa.PrimaryKeyConstraint("jti", "clip_id"),
    )
    audit_lock = sa.table(
        "audit_lock",
        sa.column("id", sa.Integer()),
        sa.column("head_seq", sa.BigInteger()),
        sa.column("head_hash", sa.String(64)),
    )
    op.bulk_insert(audit_lock, [{"id": 1, "head_seq": 0, "head_hash": GENESIS_HASH}])


def downgrade() -> None:
    raise CommandError(
        "the baseline is not undone: drop the database instead (ADR 0016, no downgrades)"
    )
