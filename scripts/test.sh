#!/usr/bin/env bash
# Set up (first time) and run the whole test suite. Needs PostgreSQL on 127.0.0.1:5432 for the PostgreSQL tests
# (TEST_POSTGRES_URL overrides the address).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
