"""Durable state: sessions, files, turns and their claims, feedback, delivered outputs."""

from bot.store.engine import async_database_url
from bot.store.store import Store, default_owner

__all__ = ["Store", "async_database_url", "default_owner"]
