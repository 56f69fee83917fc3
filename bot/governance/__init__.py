"""Governance: who may use the bot, what it may spend, and how long its data is kept."""
