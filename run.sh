#!/bin/sh
# The main job: set up .venv, then data check -> cache -> train every recipe (noisy pretrain ->
# curated k-fold) -> stack -> submission.csv -> SavedModel export -> final table.
# On the built-in demo set when input/ holds no data. Rerunning resumes finished work.
#
#   INPUT=dir       data folder (default input/)          WORK=dir  caches (default work/)
#   RUNS=dir        run folders (default runs/)           RECIPES="models/a.toml models/b.toml"
#   STACK_RECIPE=   stacker recipe (stacking/lc1d.toml; demo: stacking/demo.toml; no GPU: stacking/cpu.toml)
#   EPOCHS_SCALE=0.1 quick runs
#   N_SPLITS=k      curated folds (default: the recipes') DEMO_ARGS="--n-curated 40 ..." demo size
#   SUBMISSION=file where to write the submission (default submission.csv)
# Without a GPU (no nvidia-smi listing one), user data trains models/cpu_*.toml unless RECIPES is set.
set -eu
cd "$(dirname "$0")"
. scripts/setup.sh
INPUT="${INPUT:-input}"
WORK="${WORK:-work}"
RUNS="${RUNS:-runs}"
EPOCHS_SCALE="${EPOCHS_SCALE:-1}"
SUBMISSION="${SUBMISSION:-submission.csv}"
FT="$VENV/bin/freesound-tf"

if ! ls "$INPUT" 2>/dev/null | grep -qv '^README.md$'; then
    echo "[run] $INPUT/ holds no data: using the built-in demo set"
    # shellcheck disable=SC2086  # DEMO_ARGS is a list of options
    "$FT" demo-data --out "$WORK/demo" ${DEMO_ARGS:-}
    INPUT="$WORK/demo"
    RECIPES="${RECIPES:-models/demo.toml models/demo_max3.toml}"
    STACK_RECIPE="${STACK_RECIPE:-stacking/demo.toml}"
fi
# The seed recipes are GPU-sized (44.1 kHz, wide CNNs, hundreds of epochs: days on a CPU); without a GPU,
# user data gets the CPU family (models/cpu_*.toml, minutes per fold on 2 cores) unless RECIPES says otherwise.
if [ -z "${RECIPES:-}" ] && ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
    RECIPES="models/cpu_cnn9.toml models/cpu_ds_cnn2d.toml"
    STACK_RECIPE="${STACK_RECIPE:-stacking/cpu.toml}"
    echo "[run] no GPU found: the seed recipes (models/v1mix.toml ...) are sized for a GPU; training the CPU"
    echo "[run] recipes $RECIPES instead (RECIPES=\"models/v1mix.toml ...\" sh run.sh to insist)"
fi
# In order: a recipe with train.init_from needs that run first (max3exam starts from v1mix's pretraining).
RECIPES="${RECIPES:-models/v1mix.toml models/max3exam.toml models/msc_se_w1.toml models/msc_se_w2.toml models/se_w15.toml models/se.toml}"
STACK_RECIPE="${STACK_RECIPE:-stacking/lc1d.toml}"

run_dirs=""
for recipe in $RECIPES; do
    run_dir="$RUNS/$(basename "$recipe" .toml)"
    echo "[run] training $recipe -> $run_dir"
    "$FT" train --recipe "$recipe" --input "$INPUT" --work "$WORK" --run-dir "$run_dir" \
        --epochs-scale "$EPOCHS_SCALE" ${N_SPLITS:+--n-splits "$N_SPLITS"}
    run_dirs="$run_dirs $run_dir"
done

echo "[run] stacking$run_dirs"
# shellcheck disable=SC2086  # run_dirs is a list of folders
"$FT" stack --recipe "$STACK_RECIPE" --runs $run_dirs --out "$RUNS/stack"
cp "$RUNS/stack/submission.csv" "$SUBMISSION"
# shellcheck disable=SC2086
"$FT" export --runs $run_dirs --stack "$RUNS/stack" --out "$RUNS/export"
if [ -f "$INPUT/test_truth.csv" ]; then
    echo "[run] stacked submission against $INPUT/test_truth.csv:"
    "$FT" evaluate --submission "$SUBMISSION" --truth "$INPUT/test_truth.csv" | head -3
fi
echo "[run] done"
echo "  submission:     $SUBMISSION"
echo "  run folders:   $run_dirs"
echo "  stack table:    $RUNS/stack/table.json"
latest="$(ls "$RUNS/export" | grep -E '^[0-9]+$' | sort -n | tail -1)"
echo "  SavedModel:     $RUNS/export/$latest (serving_default: waveform -> scores; metadata: labels)"
