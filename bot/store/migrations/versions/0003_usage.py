"""Usage per turn (cached input and reasoning tokens, containers, bytes uploaded, estimated cost) and
`spend_totals`, the running sums the budget check reads.

Turns recorded before this revision get an estimated cost from their stored tokens at gpt-5.1's
standard rates ($1.25 input, $10.00 output per million tokens; their cached and reasoning tokens and
containers were not recorded), and those costs are summed into `spend_totals`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen here on purpose: a migration must give the same result whatever the bot's price table says later.
INPUT_USD_PER_TOKEN = 1.25 / 1_000_000
OUTPUT_USD_PER_TOKEN = 10.00 / 1_000_000


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("cached_input_tokens", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("reasoning_tokens", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("containers_created", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("bytes_uploaded", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cost_usd", sa.Float(), nullable=True))
        batch.create_index("ix_turns_created_at", ["created_at"])
    spend_totals = op.create_table(
        "spend_totals",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "team_id", "key", "period"),
    )
    conn = op.get_bind()
    op.execute(
        sa.text(
            "UPDATE turns SET cost_usd = COALESCE(input_tokens, 0) * :input + COALESCE(output_tokens, 0) * :output "
            "WHERE status IN ('done', 'failed')"
        ).bindparams(input=INPUT_USD_PER_TOKEN, output=OUTPUT_USD_PER_TOKEN)
    )
    totals: dict[tuple[str, str, str, str], float] = {}
    rows = conn.execute(sa.text("SELECT team_id, channel, user_id, created_at, cost_usd FROM turns WHERE cost_usd > 0"))
    for team_id, channel, user_id, created_at, cost in rows:
        when = datetime.fromtimestamp(float(created_at), UTC)
        day, month = when.strftime("%Y-%m-%d"), when.strftime("%Y-%m")
        for key in (
            ("user", team_id, user_id, day),
            ("channel", team_id, channel, day),
            ("team", team_id, team_id, month),
        ):
            totals[key] = totals.get(key, 0.0) + float(cost)
    if totals:
        op.bulk_insert(
            spend_totals,
            [
                {"scope": scope, "team_id": team, "key": key, "period": period, "cost_usd": cost}
                for (scope, team, key, period), cost in totals.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("spend_totals")
    with op.batch_alter_table("turns") as batch:
        batch.drop_index("ix_turns_created_at")
        for column in ("cost_usd", "bytes_uploaded", "containers_created", "reasoning_tokens", "cached_input_tokens"):
            batch.drop_column(column)
