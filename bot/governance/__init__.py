"""Governance: who may use the bot (access), and later what it may spend and how long it keeps things."""
