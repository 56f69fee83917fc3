"""turns.answer_messages: every Slack message of a partial answer, so a restart replaces all of them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("turns", sa.Column("answer_messages", sa.Text(), nullable=True))
    # A turn interrupted before this revision knew only its first answer message.
    op.execute(
        "UPDATE turns SET answer_messages = '[\"' || reply_ts || '\"]' WHERE reply_ts IS NOT NULL AND reply_ts <> ''"
    )


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("answer_messages")
