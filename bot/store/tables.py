"""The bot's tables (SQLAlchemy Core). Every change here is an Alembic revision in `bot.store.migrations`."""

from __future__ import annotations

import sqlalchemy as sa
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

metadata = sa.MetaData()

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("team_id", sa.String(32), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("thread_ts", sa.String(32), primary_key=True),
    sa.Column("conversation_id", sa.String(128)),
    sa.Column("container_id", sa.String(128)),
    sa.Column("root_checked", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

thread_files = sa.Table(
    "thread_files",
    metadata,
    sa.Column("team_id", sa.String(32), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("thread_ts", sa.String(32), primary_key=True),
    sa.Column("slack_file_id", sa.String(64), primary_key=True),
    sa.Column("openai_file_id", sa.String(128), nullable=False),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("sha256", sa.String(64), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)

turns = sa.Table(
    "turns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("team_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("ts", sa.String(32), nullable=False),
    sa.Column("thread_ts", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("files_json", sa.Text, nullable=False, default="[]"),
    sa.Column("is_thread_reply", sa.Boolean, nullable=False, default=False),
    # pending -> running -> done | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # The process that will answer the turn, and until when its claim holds (renewed while it lives).
    sa.Column("owner", sa.String(128), nullable=False, default=""),
    sa.Column("lease_until", sa.Float, nullable=False, default=0.0),
    sa.Column("reply_ts", sa.String(32)),  # the first of `answer_messages` (kept for older readers)
    # Every Slack message that carries (part of) the answer, as a JSON list of ts, oldest first.
    sa.Column("answer_messages", sa.Text),
    sa.Column("response_id", sa.String(128)),
    sa.Column("outcome", sa.String(64)),
    sa.Column("model", sa.String(128)),
    sa.Column("input_tokens", sa.Integer),
    sa.Column("output_tokens", sa.Integer),
    sa.Column("duration_s", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # Usage (cached input is part of input, reasoning part of output) and its estimated cost in USD,
    # written when the turn is recorded.
    sa.Column("cached_input_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("reasoning_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("containers_created", sa.Integer, nullable=False, server_default="0"),
    sa.Column("bytes_uploaded", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cost_usd", sa.Float),
    sa.UniqueConstraint("team_id", "channel", "ts", name="uq_turns_message"),
    sa.Index("ix_turns_created_at", "created_at"),
)

# What was spent per budget period, added to when a turn is recorded, so the budget check before a
# turn reads three rows by key however many turns there were. `scope` is user | channel | team;
# `key` the user id, channel id or team id; `period` the UTC day (YYYY-MM-DD) or month (YYYY-MM) of
# the turn's question.
spend_totals = sa.Table(
    "spend_totals",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),
    sa.Column("team_id", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("period", sa.String(10), primary_key=True),
    sa.Column("cost_usd", sa.Float, nullable=False),
)

delivered_outputs = sa.Table(
    "delivered_outputs",
    metadata,
    sa.Column("container_id", sa.String(128), primary_key=True),
    sa.Column("file_id", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("team_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("thread_ts", sa.String(32), nullable=False),
    sa.Column("message_ts", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("response_id", sa.String(128), nullable=False),
    sa.Column("rating", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# What is left of a thread whose data was deleted (retention or `forget`): a reply there starts a fresh
# session, and its first turn says why (`announced_at` records that it was said).
thread_tombstones = sa.Table(
    "thread_tombstones",
    metadata,
    sa.Column("team_id", sa.String(32), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("thread_ts", sa.String(32), primary_key=True),
    sa.Column("deleted_at", sa.Float, nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),  # retention | forget
    sa.Column("idle_days", sa.Float),  # RETENTION_DAYS at the time (retention only)
    sa.Column("announced_at", sa.Float),
)

# OpenAI objects of forgotten threads still to delete; a row goes when OpenAI confirms (or answers 404).
openai_deletions = sa.Table(
    "openai_deletions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # file | container | conversation | response
    sa.Column("object_id", sa.String(128), nullable=False),
    sa.Column("team_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("thread_ts", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Not retried before this time: a replica's claim, or (after a failure) the failing sweep's end.
    sa.Column("not_before", sa.Float, nullable=False, default=0.0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.String(500), nullable=False, default=""),
    sa.UniqueConstraint("kind", "object_id", name="uq_openai_deletions_object"),
    sa.Index("ix_openai_deletions_thread", "team_id", "channel", "thread_ts"),
)

# The retention sweep looks for each idle session's latest turn.
sa.Index("ix_turns_thread", turns.c.team_id, turns.c.channel, turns.c.thread_ts)

# Who may follow up without a mention when FOLLOW_UPS=participants: the session's starter and everyone whose
# accepted message in the thread mentioned the bot. Written with the message, in the acceptor's transaction.
session_participants = sa.Table(
    "session_participants",
    metadata,
    sa.Column("team_id", sa.String(32), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("thread_ts", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), primary_key=True),
)

# "Not enabled for you here" notices already shown, so replicas and restarts do not repeat them. `thread_ts`
# is the thread root for a refused person's un-mentioned replies (one notice per thread), and the message's
# own ts for a refused mention or DM (one notice per message, however often Slack delivers it).
access_notices = sa.Table(
    "access_notices",
    metadata,
    sa.Column("team_id", sa.String(32), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("thread_ts", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Slack installations and OAuth states, for installing in many workspaces (`bot.slack.oauth`): the tables
# slack_sdk's `AsyncSQLAlchemyInstallationStore` and `AsyncSQLAlchemyOAuthStateStore` read and write, built
# by their own builders so the shapes cannot drift apart (revision 0006 creates them).
slack_installations = SQLAlchemyInstallationStore.build_installations_table(metadata, "slack_installations")
slack_bots = SQLAlchemyInstallationStore.build_bots_table(metadata, "slack_bots")
slack_oauth_states = SQLAlchemyOAuthStateStore.build_oauth_states_table(metadata, "slack_oauth_states")

# Files the deployment itself keeps at OpenAI (not a thread's): the chart font, uploaded once and reused while
# OpenAI still has it. `sha256` tells a changed file (a new font package version) from the uploaded one.
deployment_files = sa.Table(
    "deployment_files",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("openai_file_id", sa.String(128), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
