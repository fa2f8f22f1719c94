#!/usr/bin/env bash
# The default model, its Mask R-CNN and attention-off rungs, and three lever runs on the
# train45 hold-out split, side by side on one GPU (each run is benchmarks/default_model.py;
# see that file). Runs still training after $DEADLINE seconds are stopped and their last
# checkpoint is evaluated instead (evaluation.json then names it). Each run's final (or last)
# weights are also written in float16, as the shipped model is stored, to OUT/NAME_fp16.safetensors:
# the models that `donet evaluate --model` scores on the CPU and that
# benchmarks/default_model_figures.py --compare draws (runs/gpu/maskrcnn_fp16.safetensors).
#     benchmarks/gpu_runs.sh runs/gpu
set -u
out=${1:-runs/gpu}
deadline=${DEADLINE:-100000}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
declare -A runs=(
    [donet]=""
    [maskrcnn]="--preset maskrcnn"
    [donet_no_attention]="--preset donet_no_attention"
    [holdout_donet]="--holdout"
    [holdout_sampled_attention]="--holdout --set attention_from_ground_truth=false"
    [holdout_nucleus_roi14]="--holdout --set nucleus_mask_roi_size=14"
)
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
