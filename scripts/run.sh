#!/usr/bin/env bash
# Set up (first time) and start the bot. Configuration comes from the environment or .env.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ ! -f .env ] && [ -z "${SLACK_BOT_TOKEN:-}" ]; then
  cp -n .env.example .env
  echo "Created .env from .env.example: fill in the tokens (see README.md -> Configuration), then run this again." >&2
  exit 2
fi
exec .venv/bin/python -m bot "$@"
