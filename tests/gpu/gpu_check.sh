#!/usr/bin/env bash
# Every CUDA/NCCL check in one run (`make gpu-check`), on a machine with an NVIDIA GPU. It needs no cargo:
# `make gpu-bundle` stages what it runs (the stripped binary, the test binaries that hold the CUDA tests)
# into target/gpu-bundle, which can be copied to a GPU machine that has the pinned torch wheel.
#
# usage: tests/gpu/gpu_check.sh BUNDLE_DIR OUT_DIR [REFERENCE_CHECKOUT]
#   BUNDLE_DIR  holds nanochat and tests/precision (from `make gpu-bundle`)
#   OUT_DIR     where the smoke run, logs and tables go (tables also on stdout)
#   REFERENCE_CHECKOUT  karpathy/nanochat at 10231df, for the side-by-side training benchmark (optional)
# Each check prints a line "== CHECK <name>: ok|FAILED"; the exit status is the number of failures.
set -uo pipefail
bundle=$(cd "$1" && pwd); out=$(mkdir -p "$2" && cd "$2" && pwd); reference=${3:-}
bin=$bundle/nanochat
repo=$(cd "$(dirname "$0")/../.." && pwd)
failures=0
check() {  # check NAME COMMAND...: runs it with output to the console and OUT_DIR/NAME.log
    local name=$1; shift
    echo "== $name: $*"
    local start=$SECONDS
    if "$@" 2>&1 | tee "$out/$name.log"; then
        echo "== CHECK $name: ok ($((SECONDS - start)) s)"
    else
        echo "== CHECK $name: FAILED ($((SECONDS - start)) s, log in $out/$name.log)"
        failures=$((failures + 1))
    fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv | tee "$out/gpus.csv"
check doctor "$bin" doctor --preset d20 --allow-mismatch
# bf16 policy on CUDA: dtypes of wte, activations, logits, gradients and optimizer state; fused SDPA kernel.
check precision "$bundle/precision" --ignored --test-threads=1
# The smoke speedrun, every stage, on one GPU in bf16 (the preset's CPU default switched to cuda).
check smoke-gpu env CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} NANOCHAT_ALLOW_UNSANDBOXED=1 \
    "$bin" speedrun --preset smoke --base-dir "$out/smoke" --set hardware.device=cuda --set hardware.gpus=1
if [ -f "$out/smoke/report/report.md" ]; then cp "$out/smoke/report/report.md" "$out/smoke-report.md"; fi
grep -h "compute dtype\|attention kernel" "$out"/smoke/logs/*.log 2>/dev/null | sort | uniq -c
# NCCL all-reduce bandwidth over the visible GPUs (one process per GPU).
check collectives "$bin" bench collectives --max-mib 256 --iters 20
# The fused pointwise functions (relu², rotary) vs the same ops one by one, bf16 at d20's shapes.
check pointwise "$bin" bench pointwise --depth 20 --batch 32 --seq-len 2048
# d20 at the speedrun's device batch (32 x 2048): ours vs the reference, eager and torch.compile'd.
ref_args=(); [ -n "$reference" ] && ref_args=(--reference "$reference" --compile)
check train-d20 python3 "$repo/tests/bench/bench_train.py" --bin "$bin" --device cuda --depths 20 \
    --seq-len 2048 --batch 32 --steps 10 --warmup 3 "${ref_args[@]}"
# Single-token decoding with the KV cache.
check decode "$bin" bench engine --depth 20 --prompt-len 256 --max-tokens 256 --batch 8
echo "gpu-check: $failures failure(s); logs in $out"
exit "$failures"
