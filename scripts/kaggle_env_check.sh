#!/bin/sh
# Acceptance check for Kaggle bundles, on demand (not in CI; the setup needs network):
#  1. with the project's .venv: the demo set at 8 kHz, a tiny run, and its `kaggle-bundle`;
#  2. a fresh venv with the versions of a Kaggle notebook image (below);
#  3. offline (pip index off, proxies pointed at a closed port, no pip config): the bundle's
#     kaggle_infer.py installs the wheels with `pip --no-index` and writes submission.csv for the
#     demo test clips; the check then wants a row per clip and the image's TensorFlow, Keras and
#     scikit-learn left as they were.
#
#   sh scripts/kaggle_env_check.sh [WORK]     (default: ${TMPDIR:-/tmp}/freesound_tf_kaggle)
set -eu
cd "$(dirname "$0")/.."
WORK="${1:-${TMPDIR:-/tmp}/freesound_tf_kaggle}"
PROJECT_PY="${PROJECT_PY:-.venv/bin/python}"
PYTHON="${PYTHON:-python3.11}"
# Kaggle's Python image of 2025 (built on Colab's): Python 3.11, TensorFlow 2.18.0 with Keras 3.8.0,
# scikit-learn pinned to 1.2.2 and matplotlib < 3.8 by Kaggle's kaggle_requirements.txt, numpy 1.26,
# librosa 0.10.2 (older than kapre 0.4.1 allows: the bundle's librosa wheel replaces it).
KAGGLE_IMAGE="tensorflow==2.18.0 keras==3.8.0 scikit-learn==1.2.2 numpy==1.26.4 pandas==2.2.3 scipy==1.13.1
  h5py==3.12.1 librosa==0.10.2.post1 soundfile==0.12.1 soxr==0.5.0.post1 matplotlib==3.7.5 tqdm==4.67.1"

rm -rf "$WORK"
mkdir -p "$WORK"
export TF_CPP_MIN_LOG_LEVEL=2
echo "[kaggle-check] 1/3 demo set, tiny run and bundle (project environment)"
cat > "$WORK/tiny.toml" <<'TOML'
name = "tiny"
[audio]
sample_rate = 8000
[pipeline]
crop_seconds = 1.0
batch_size = 8
[folds]
n_splits = 2
[frontend]
n_fft = 256
hop_length = 128
n_mels = 32
[model]
stem_width = 4
block_widths = [4, 8, 8]
gru_units = 4
[train.finetune]
epochs = 1
TOML
"$PROJECT_PY" -m freesound_tf demo-data --out "$WORK/demo" --sample-rate 8000 --n-curated 24 --n-noisy 4 --n-test 12
"$PROJECT_PY" -m freesound_tf train --recipe "$WORK/tiny.toml" --input "$WORK/demo" --work "$WORK/work" \
    --run-dir "$WORK/runs/tiny" --workers 1 --quiet
"$PROJECT_PY" -m freesound_tf kaggle-bundle --runs "$WORK/runs/tiny" --out "$WORK/bundle"
ls "$WORK/bundle/wheels" | sed 's/^/  wheel: /'

echo "[kaggle-check] 2/3 Kaggle-like environment"
"$PYTHON" -m venv "$WORK/kaggle"
"$WORK/kaggle/bin/python" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086  # KAGGLE_IMAGE is a list of requirements
"$WORK/kaggle/bin/python" -m pip install --quiet $KAGGLE_IMAGE
"$WORK/kaggle/bin/python" -m pip freeze > "$WORK/image_before.txt"

echo "[kaggle-check] 3/3 offline: kaggle_infer.py installs the bundle and writes the submission"
offline() {
    env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null \
        http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 \
        HTTPS_PROXY=http://127.0.0.1:9 "$@"
}
(cd "$WORK" && offline "$WORK/kaggle/bin/python" "$WORK/bundle/kaggle_infer.py" --test-dir "$WORK/demo/test" \
    --sample-submission "$WORK/demo/sample_submission.csv" --out "$WORK/submission.csv")
"$WORK/kaggle/bin/python" -m pip freeze > "$WORK/image_after.txt"
echo "[kaggle-check] packages the bundle added or changed:"
diff "$WORK/image_before.txt" "$WORK/image_after.txt" | grep '^[<>]' | sed 's/^/  /' || true
for kept in tensorflow== keras== scikit-learn== numpy==; do
    grep -q "^$kept" "$WORK/image_before.txt"
    if [ "$(grep "^$kept" "$WORK/image_before.txt")" != "$(grep "^$kept" "$WORK/image_after.txt")" ]; then
        echo "[kaggle-check] FAILED: the bundle changed the image's ${kept%==}"; exit 1
    fi
done
rows=$(($(wc -l < "$WORK/submission.csv") - 1))
expected=$(($(wc -l < "$WORK/demo/sample_submission.csv") - 1))
if [ "$rows" -ne "$expected" ]; then
    echo "[kaggle-check] FAILED: submission.csv has $rows rows, sample_submission.csv $expected"; exit 1
fi
"$PROJECT_PY" -m freesound_tf evaluate --submission "$WORK/submission.csv" --truth "$WORK/demo/test_truth.csv" | head -2
echo "[kaggle-check] passed: $rows rows in $WORK/submission.csv"
