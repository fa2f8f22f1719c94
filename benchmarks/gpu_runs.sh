#!/usr/bin/env bash
# Model v2's runs side by side on one GPU (each run is benchmarks/default_model.py, 3200
# iterations unless ITERATIONS is set; see that file): the default model, its Mask R-CNN
# rung, and the levers on the train45 hold-out split (low-resolution training images, the
# eight symmetries, a second seed, a longer schedule). Name runs after OUT to run only those. Runs still
# training after $DEADLINE seconds are stopped and their last checkpoint is evaluated instead
# (evaluation.json then names it). Each run's final (or last) weights are also written in
# float16, as the shipped model is stored, to OUT/NAME_fp16.safetensors: the models that
# `donet evaluate --model` scores on the CPU and that benchmarks/default_model_figures.py
# --compare draws (runs/gpu/maskrcnn_fp16.safetensors).
#     benchmarks/gpu_runs.sh runs/gpu [holdout_lowres holdout_dihedral ...]
set -u
out=${1:-runs/gpu}
shift || true
deadline=${DEADLINE:-100000}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
declare -A runs=(
    [donet]=""
    [maskrcnn]="--preset maskrcnn"
    [holdout]="--holdout"
    [holdout_lowres]='--holdout --set low_resolution={"probability":0.5}'
    [holdout_dihedral]="--holdout --set vertical_flip=true transpose=true"
    [holdout_seed1]="--holdout --seed 1"
    [holdout_4800]="--holdout --iterations 4800"
)
if [ $# -gt 0 ]; then
    for name in "${!runs[@]}"; do [[ " $* " == *" $name "* ]] || unset "runs[$name]"; done
    [ ${#runs[@]} -gt 0 ] || { echo "no such run: $*" >&2; exit 2; }
fi
pids=()
for name in "${!runs[@]}"; do
    python3 benchmarks/default_model.py --out "$out/$name" ${runs[$name]} ${ITERATIONS:+--iterations $ITERATIONS} > "$out/$name.log" 2>&1 &
    pids+=($!)
done
( sleep "$deadline"; for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done ) &
watchdog=$!
wait "${pids[@]}"
kill "$watchdog" 2>/dev/null
for name in "${!runs[@]}"; do
    [ -f "$out/$name/evaluation.json" ] && continue
    last="$out/$name/checkpoints/$(cat "$out/$name/checkpoints/last" 2>/dev/null)"
    [ -f "$last/model.safetensors" ] || { echo "$name: no checkpoint"; continue; }
    python3 benchmarks/default_model.py --out "$out/$name" ${runs[$name]} --evaluate "$last/model.safetensors" \
        >> "$out/$name.log" 2>&1 &
done
wait
for name in "${!runs[@]}"; do
    weights="$out/$name/model.safetensors"
    [ -f "$weights" ] || weights="$out/$name/checkpoints/$(cat "$out/$name/checkpoints/last" 2>/dev/null)/model.safetensors"
    [ -f "$weights" ] && python3 -c 'import sys
from donet.modeling.weights import load_model, save_weights
save_weights(load_model(sys.argv[1]), sys.argv[2], half=True)' "$weights" "$out/${name}_fp16.safetensors"
done
grep -h "mAP" "$out"/*.log
