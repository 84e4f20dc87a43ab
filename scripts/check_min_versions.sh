#!/bin/sh
# On demand, not in CI: install the LOWEST version of every dependency pyproject.toml declares (core,
# train and test extras) into a fresh venv and run a smoke test there (tiny training run, model API,
# export and serving). Proves the lower bounds true. Needs network (PyPI) and ~3 GB of disk.
#
#   sh scripts/check_min_versions.sh [VENV]      (default: ${TMPDIR:-/tmp}/freesound_tf_min)
set -eu
cd "$(dirname "$0")/.."
VENV="${1:-${TMPDIR:-/tmp}/freesound_tf_min}"
PYTHON="${PYTHON:-python3.11}"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# name==lowest for every ">=" bound of the core, train and test requirements.
"$VENV/bin/python" - > "$VENV/lowest.txt" <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
for requirement in project["dependencies"] + extras["train"] + extras["test"]:
    match = re.match(r"([A-Za-z0-9._-]+)(\[[^]]*\])?.*?>=\s*([^,;\s]+)", requirement)
    if match:
        print(f"{match.group(1)}=={match.group(3)}")
PY
echo "[min-versions] lowest declared versions:"; sed 's/^/  /' "$VENV/lowest.txt"
"$VENV/bin/python" -m pip install --quiet -c "$VENV/lowest.txt" ".[train,test]"
"$VENV/bin/python" -m pip check
echo "[min-versions] installed:"; "$VENV/bin/python" -m pip freeze | grep -v '^freesound' | sed 's/^/  /'
export TF_CPP_MIN_LOG_LEVEL=2
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_api.py tests/export/test_serving_requests.py \
    tests/export/test_features_layer.py tests/data/test_audio.py
echo "[min-versions] smoke test passed with the lowest declared versions"
