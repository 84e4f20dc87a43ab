#!/bin/sh
# The main job: set up .venv, then train every recipe on input/ (or on the built-in demo set
# when input/ holds no data), write submission.csv and score it when test truth exists.
# Rerunning resumes: caches, finished folds and finished epochs are reused.
#   INPUT=dir WORK=dir RUNS=dir RECIPES="models/a.toml ..." EPOCHS_SCALE=0.1 FOLDS=0,1 sh run.sh
set -eu
cd "$(dirname "$0")"
. scripts/setup.sh
INPUT="${INPUT:-input}"
WORK="${WORK:-work}"
RUNS="${RUNS:-runs}"
EPOCHS_SCALE="${EPOCHS_SCALE:-1}"
FT="$VENV/bin/freesound-tf"

if ! ls "$INPUT" 2>/dev/null | grep -qv '^README.md$'; then
    echo "[run] $INPUT/ holds no data: using the built-in demo set"
    "$FT" demo-data "$WORK/demo"
    INPUT="$WORK/demo"
    RECIPES="${RECIPES:-models/demo.toml}"
fi
RECIPES="${RECIPES:-models/v1mix.toml models/max3exam.toml models/msc_se_w1.toml models/msc_se_w2.toml models/se_w15.toml models/se.toml}"

for recipe in $RECIPES; do
    echo "[run] training $recipe"
    "$FT" train --recipe "$recipe" --input "$INPUT" --work "$WORK" --runs "$RUNS" \
        --epochs-scale "$EPOCHS_SCALE" ${FOLDS:+--folds "$FOLDS"}
done

first_run="$RUNS/$(basename "${RECIPES%% *}" .toml)"
test_dir="$INPUT/test"; [ -d "$test_dir" ] || test_dir="$INPUT/audio_test"
"$FT" predict --run "$first_run" --audio-dir "$test_dir" --work "$WORK" --out submission.csv
if [ -f "$INPUT/test_truth.csv" ]; then
    "$FT" evaluate --submission submission.csv --truth "$INPUT/test_truth.csv"
fi
echo "[run] done: submission.csv; run folders in $RUNS/"
