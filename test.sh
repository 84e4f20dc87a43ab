#!/bin/sh
# Set up the environment (first run only) and run the test suite: sh test.sh [pytest args]
set -eu
cd "$(dirname "$0")"
. scripts/setup.sh
exec "$VENV/bin/python" -m pytest -q "$@"
