"""Retention and forget: thread_tombstones, the openai_deletions queue, and an index on turns by thread.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "thread_tombstones",
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("thread_ts", sa.String(32), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("idle_days", sa.Float(), nullable=True),
        sa.Column("announced_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("team_id", "channel", "thread_ts"),
    )
    op.create_table(
        "openai_deletions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("object_id", sa.String(128), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("thread_ts", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "object_id", name="uq_openai_deletions_object"),
    )
    op.create_index("ix_openai_deletions_thread", "openai_deletions", ["team_id", "channel", "thread_ts"])
    # The sweep asks, per idle session, whether the thread has a recent or unfinished turn.
    op.create_index("ix_turns_thread", "turns", ["team_id", "channel", "thread_ts"])


def downgrade() -> None:
    op.drop_index("ix_turns_thread", table_name="turns")
    op.drop_index("ix_openai_deletions_thread", table_name="openai_deletions")
    op.drop_table("openai_deletions")
    op.drop_table("thread_tombstones")
