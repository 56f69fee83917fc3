"""session_participants and access_notices: who may follow up (FOLLOW_UPS=participants), who was told "no".

Sessions made before this revision get their starter (the author of the thread's first turn) as a
participant, so FOLLOW_UPS=participants keeps working in them; later mentioners join as they mention.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "session_participants",
        sa.Column("team_id", sa.String(32), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("thread_ts", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), primary_key=True),
    )
    op.create_table(
        "access_notices",
        sa.Column("team_id", sa.String(32), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("thread_ts", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.execute(
        "INSERT INTO session_participants (team_id, channel, thread_ts, user_id)"
        " SELECT t.team_id, t.channel, t.thread_ts, t.user_id FROM turns t"
        " JOIN sessions s ON s.team_id = t.team_id AND s.channel = t.channel AND s.thread_ts = t.thread_ts"
        " WHERE t.id = (SELECT MIN(f.id) FROM turns f"
        " WHERE f.team_id = t.team_id AND f.channel = t.channel AND f.thread_ts = t.thread_ts)"
    )


def downgrade() -> None:
    op.drop_table("access_notices")
    op.drop_table("session_participants")
