#!/bin/sh
# Set up the environment (first run only) and run the test suite: sh test.sh [pytest args]
# Tests run in parallel processes, one per core up to 4 (each holds its own TensorFlow); -n 0 runs serially.
set -eu
cd "$(dirname "$0")"
. scripts/setup.sh
cores="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
[ "$cores" -gt 4 ] && cores=4
exec "$VENV/bin/python" -m pytest -q -n "$cores" "$@"
