"""Governance: who may use the bot, what it may spend, and what it keeps."""
