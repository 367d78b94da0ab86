"""refresh tokens remember the token they were rotated from

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 19:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("refresh_tokens", sa.Column("parent_id", sa.String(length=36), nullable=True))
    op.create_index(
        op.f("ix_refresh_tokens_parent_id"), "refresh_tokens", ["parent_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_refresh_tokens_parent_id"), table_name="refresh_tokens")
    # SQLite drops a column by rebuilding the table.
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("parent_id")
