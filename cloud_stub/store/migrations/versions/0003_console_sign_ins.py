"""Add console_sign_ins: the review console's sign-in attempts, counted in the store.

The console's sign-in limit counted attempts in the memory of the process that served
them, so every process serving the same store allowed its own share and a restart of
`serve` forgot them (docs/adr/0015-review-console.md, section 4). An empty table: the
limiter's window starts afresh after the upgrade, as after any restart before it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "console_sign_ins",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("refused", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_console_sign_ins_client", "console_sign_ins", ["client", "at"],
                    unique=False)
    op.create_index("ix_console_sign_ins_at", "console_sign_ins", ["at"], unique=False)


def downgrade() -> None:
    raise CommandError("the store is never downgraded (ADR 0016)")
