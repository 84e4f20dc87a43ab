# Sourced by run.sh and test.sh: create/reuse .venv and install the pinned stack into it.
# Re-installs only when requirements.txt or pyproject.toml changed since the last install.
# FREESOUND_TF_NO_SETUP=1 skips the install (tests that drive run.sh from an installed env).
set -eu
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.freesound_tf-installed"
want="$(cat requirements.txt pyproject.toml | cksum)"
if [ -z "${FREESOUND_TF_NO_SETUP:-}" ] && { [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; }; then
    echo "[setup] installing pinned requirements (first run downloads TensorFlow, a few minutes)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r requirements.txt
    "$VENV/bin/python" -m pip install --quiet --no-deps -e .
    echo "$want" > "$stamp"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
