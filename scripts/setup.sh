# Sourced by run.sh and test.sh: create/reuse .venv and install the locked stack into it.
# requirements.txt is the complete lock (every transitive package), installed with --no-deps so
# nothing unlisted slips in; `pip check` then proves it complete and consistent.
# Re-installs only when requirements.txt, pyproject.toml or setup.py changed since the last install.
# FREESOUND_TF_NO_SETUP=1 skips the install (tests that drive run.sh from an installed env).
set -eu
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.freesound_tf-installed"
want="$(cat requirements.txt pyproject.toml setup.py | cksum)"
if [ -z "${FREESOUND_TF_NO_SETUP:-}" ] && { [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; }; then
    echo "[setup] installing the locked requirements (first run downloads TensorFlow, a few minutes)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --no-deps -r requirements.txt
    "$VENV/bin/python" -m pip install --quiet --no-deps -e .
    "$VENV/bin/python" -m pip check
    echo "$want" > "$stamp"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
