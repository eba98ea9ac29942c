"""Add console_sessions: the review console's sessions, kept by the sha256 of their id.

The console kept its sessions in the memory of the process that served it, so a restart
of `serve` signed everyone out and two processes could not share them
(docs/adr/0015-review-console.md, section 3). An empty table: nobody is signed in after
the upgrade, as after any restart before it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_sha256", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id_sha256"),
    )
    op.create_index("ix_console_sessions_principal", "console_sessions", ["principal_id"],
                    unique=False)
    op.create_index("ix_console_sessions_last_seen", "console_sessions", ["last_seen"],
                    unique=False)


def downgrade() -> None:
    raise CommandError("the store is never downgraded (ADR 0016)")
