"""Alembic environment and revisions of the bot's schema; `bot.store.migrate` runs them."""
