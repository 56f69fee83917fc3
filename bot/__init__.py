"""Slack CSV analyst: a Slack thread becomes an OpenAI code-interpreter analysis session."""
