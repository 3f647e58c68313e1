#!/usr/bin/env bash
# The GPU check (`make gpu-check`), run from the bundle `make gpu-bundle` stages (tests/gpu/stage_bundle.sh): no
# cargo, no network and no repository needed, only a python with torch 2.11 (pip). First what runs anywhere: the
# bundle's integrity (MANIFEST), the torch version, finding libtorch (the build's rpath, else the lib dir of that
# python's torch through LD_LIBRARY_PATH), the scripts' syntax, and the smoke data (fetched from the bundle through
# the binary's own offline path). Then, on an NVIDIA GPU: the doctor, the bf16 policy and fused attention (the
# precision test), the smoke speedrun on one GPU, NCCL all-reduce (2+ GPUs), the fused pointwise functions, d20
# training next to the reference (eager, then torch.compile'd) and decoding; each must find in its own log that it
# ran on the GPU (`device: cuda:N (<name>...)`, bf16). Without a GPU those are reported skipped, with the reason.
#
# usage: BUNDLE/gpu_check.sh OUT_DIR   (logs, the smoke run and the tables go to OUT_DIR; PYTHON=... picks the
#        python whose torch is used, default python3)
# Each check prints "== CHECK <name>: ok|FAILED|skipped (reason)"; the end is a table of them, and the exit
# status is the number of failures.
set -uo pipefail
[ $# -eq 1 ] || { sed -n '11,12p' "$0" >&2; exit 2; }
bundle=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
py=${PYTHON:-python3}
bin=$bundle/nanochat
export PYTHONDONTWRITEBYTECODE=1 # the reference is imported from the bundle: keep it as MANIFEST lists it

# Every check runs under `timeout` (then 2 s to exit before SIGKILL). On one GPU (no collectives) the budgets add
# up to 450 s, 474 s with every grace period, so the whole script ends inside 8 minutes on one H100.
declare -A budget=(
    [integrity]=10           # sha256 of the bundle's ~45 MiB
    [torch-version]=15       # one python importing torch
    [libtorch]=15            # ldd, `nanochat --version`
    [syntax]=10              # bash -n, python compile()
    [data]=20                # the smoke shards and chat stand-ins through the binary's local mirror, sha256-checked
    [doctor]=15              # the preflight against d20's needs; CUDA started once
    [precision]=20           # two CUDA tests: d2 in bf16, one optimizer step, the d20 attention kernel; the chunked loss
    [smoke]=150              # the smoke speedrun, 15 stages at depth 2, on one GPU
    [collectives]=30         # NCCL all-reduce 1..256 MiB, one process per GPU (2+ GPUs only)
    [pointwise]=20           # relu² and rotary, fused vs op by op, bf16 at d20's shapes
    [train-d20]=55           # d20: 2 + 5 steps of ours and one counted by phase (--profile), then the reference eager
    [train-d20-compiled]=100 # d20: ours again, then the reference under torch.compile (compiling is most of it)
    [decode]=20              # d20, 256 tokens decoded with the KV cache, batch 8
)
checks=(integrity torch-version libtorch syntax data doctor precision smoke collectives pointwise train-d20
    train-d20-compiled decode)
declare -A result
failures=0

record() { # record NAME RESULT: its line now, its row in the final table
    result[$1]=$2
    echo "== CHECK $1: $2"
    case $2 in FAILED*) failures=$((failures + 1)) ;; esac
}

finish() { # finish REASON: the checks not run are skipped (REASON); the table; exit with the failure count
    local name
    for name in "${checks[@]}"; do [ -n "${result[$name]:-}" ] || record "$name" "skipped ($1)"; done
    printf '\n| check | result |\n|---|---|\n'
    for name in "${checks[@]}"; do echo "| $name | ${result[$name]} |"; done
    echo "gpu-check: $failures failure(s); logs in $out"
    exit "$failures"
}

# check NAME [PATTERN...] -- COMMAND...: runs COMMAND under its budget, output to the console and OUT_DIR/NAME.log.
# ok when it exits 0 and each extended regexp PATTERN is in that log or in OUT_DIR/NAME/logs/*.log (a run's base
# dir); "!REGEXP" must not be there. The patterns are the evidence of where the check ran.
check() {
    local name=$1 start=$SECONDS patterns=() p rc
    shift
    while [ "$1" != -- ]; do patterns+=("$1") && shift; done
    shift
    local command="$*"
    command=${command//$'\n'/ }
    echo "== $name (budget ${budget[$name]} s): ${command:0:160}$([ ${#command} -le 160 ] || echo ...)"
    timeout -k 2 "${budget[$name]}" "$@" 2>&1 | tee "$out/$name.log"
    rc=${PIPESTATUS[0]}
    local logs=("$out/$name.log") took="$((SECONDS - start)) s"
    [ -d "$out/$name/logs" ] && logs+=("$out/$name"/logs/*.log)
    case $rc in
        0) ;;
        124 | 137) record "$name" "FAILED (over its ${budget[$name]} s budget; log $out/$name.log)" && return 1 ;;
        *) record "$name" "FAILED (exit $rc after $took; log $out/$name.log)" && return 1 ;;
    esac
    for p in "${patterns[@]}"; do
        if [[ $p == '!'* ]] && grep -Eq -- "${p:1}" "${logs[@]}"; then
            record "$name" "FAILED (its log has /${p:1}/)" && return 1
        elif [[ $p != '!'* ]] && ! grep -Eq -- "$p" "${logs[@]}"; then
            record "$name" "FAILED (its log lacks /$p/)" && return 1
        fi
    done
    record "$name" "ok ($took)"
}

echo "gpu-check: bundle $bundle, output $out"
sed -n 's/^\(runpath\|torch\|commit\|reference\)=/  built with \1: /p' "$bundle/BUILD" 2>/dev/null

check integrity -- bash -c 'cd "$1" && sha256sum --quiet --strict -c MANIFEST' _ "$bundle" ||
    finish "the bundle is incomplete or damaged: stage it again with make gpu-bundle and copy all of it"

check torch-version -- "$py" -c '
import os, sys
try:
    import torch
except ImportError as e:
    sys.exit(f"error: {sys.executable} cannot import torch ({e}): install torch==2.11.0 for it, or set PYTHON to a python that has it")
if not torch.__version__.startswith("2.11."):
    sys.exit(f"error: {sys.executable} has torch {torch.__version__}, and this bundle is built against libtorch 2.11 (torch==2.11.0): install torch==2.11.0 for it (pip install torch==2.11.0), or set PYTHON to a python that has it")
print(f"torch {torch.__version__} in {os.path.dirname(torch.__file__)} (python {sys.version.split()[0]}); CUDA available: {torch.cuda.is_available()}")
print("torch lib:", os.path.join(os.path.dirname(torch.__file__), "lib"))
' || finish "needs torch 2.11"

# libtorch: the build's (the binaries' rpath, $ORIGIN being the bundle) when it is on this machine, else the lib
# dir of the torch just checked, through LD_LIBRARY_PATH.
build_lib=
IFS=: read -ra rpath <<<"$(sed -n 's/^runpath=//p' "$bundle/BUILD")"
for dir in "${rpath[@]}"; do
    dir=${dir//\$ORIGIN/$bundle}
    [ -f "$dir/libtorch_cpu.so" ] && build_lib=$dir && break
done
if [ -n "$build_lib" ]; then
    echo "libtorch: the build's, $build_lib"
else
    torch_lib=$(sed -n 's/^torch lib: //p' "$out/torch-version.log")
    export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "libtorch: the build's (${rpath[*]}) is not on this machine; using $torch_lib (LD_LIBRARY_PATH)"
fi
check libtorch 'libtorch 2\.11\.' '!not found' -- \
    bash -c 'set -o pipefail; ldd "$1" "$2" | grep -E "^/|libtorch_cpu|not found" && "$1" --version' _ "$bin" "$bundle/precision" ||
    finish "no usable libtorch"

py_files=("$bundle"/*.py)
[ -d "$bundle/reference" ] && py_files+=("$bundle"/reference/nanochat/*.py)
check syntax -- bash -c 'bash -n "$1" && shift && "$@" && echo "gpu_check.sh and $(($# - 2)) python files parse"' \
    _ "$bundle/gpu_check.sh" "$py" -c 'import sys
for f in sys.argv[1:]: compile(open(f, encoding="utf-8").read(), f, "exec")' "${py_files[@]}"

# The smoke run's data: the bundle's shards where the smoke preset builds its corpus, then the data stage's own
# download, which serves them (and the compiled-in chat stand-ins) on 127.0.0.1 and checks every sha256.
rm -rf "$out/smoke" && mkdir -p "$out/smoke/mirror/smoke" && cp "$bundle"/data/smoke/*.parquet "$out/smoke/mirror/smoke/"
check data 'serving the smoke corpus' -- "$bin" --preset smoke --base-dir "$out/smoke" data download

# GPU checks: skipped where no NVIDIA GPU is listed. Where one is, CUDA must start: a GPU that CUDA cannot use
# fails them (the doctor says why), never a quiet run on the CPU.
if ! command -v nvidia-smi >/dev/null; then
    finish "no NVIDIA GPU: nvidia-smi is not installed"
fi
nvidia-smi --query-gpu=index,name,memory.total,driver_version,compute_cap --format=csv | tee "$out/gpus.csv"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
[ "$gpus" -gt 0 ] || finish "no NVIDIA GPU: nvidia-smi lists none"
on_gpu='device: cuda:[0-9]+ \('

check doctor '"cuda_unavailable": null' 'device\(s\) usable' -- "$bin" --preset d20 doctor --allow-mismatch --json
# bf16 policy on CUDA: dtypes of wte, activations, logits, gradients and optimizer state; fused SDPA kernel. The
# test asserts it is on CUDA; its "ok" line is the evidence.
check precision 'test on_cuda_[a-z_]+ \.\.\. ok' 'test result: ok\. 2 passed' -- "$bundle/precision" --ignored --test-threads=1
# The smoke speedrun, every stage, on one GPU in bf16 (the preset's CPU default switched to cuda).
check smoke "$on_gpu" 'compute dtype: bfloat16' 'attention kernel: ' '!device: cpu' -- \
    env CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}" NANOCHAT_ALLOW_UNSANDBOXED=1 \
    "$bin" speedrun --preset smoke --base-dir "$out/smoke" --set hardware.device=cuda --set hardware.gpus=1
[ -f "$out/smoke/report/report.md" ] && cp "$out/smoke/report/report.md" "$out/smoke-report.md"
if [ "$gpus" -lt 2 ]; then
    record collectives "skipped (NCCL all-reduce needs 2 or more GPUs; this machine has $gpus)"
else
    check collectives 'on Cuda\([0-9]+\) \(Nccl\)' -- "$bin" bench collectives --nproc-per-node "$gpus" --max-mib 256 --iters 20
fi
check pointwise "$on_gpu" 'BFloat16 on Cuda\(' -- "$bin" bench pointwise --device cuda --depth 20 --batch 32 --seq-len 2048

# d20's device batch by GPU 0's memory: 16 x 2048 from 70 GB up (an 80 GB card). By our estimate the reference's
# eager step, which keeps every activation and the fp32 logits (B·T x 65,536), needs more than 80 GB at the
# speedrun's 32; fewer steps than the speedrun's thousands, enough for a steady step time.
memory_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i 0)
batch=$((memory_mib >= 70000 ? 16 : memory_mib >= 35000 ? 8 : 4))
train=("$py" "$bundle/bench_train.py" --bin "$bin" --device cuda --depths 20 --seq-len 2048 --batch "$batch" --steps 5 --warmup 2)
if [ -d "$bundle/reference" ]; then
    check train-d20 "$on_gpu" '"dtype": "bfloat16"' '\| total \|' -- "${train[@]}" --profile --reference "$bundle/reference" \
        --impls ours reference
    check train-d20-compiled "$on_gpu" -- "${train[@]}" --reference "$bundle/reference" --impls ours reference-compiled
else
    check train-d20 "$on_gpu" '"dtype": "bfloat16"' '\| total \|' -- "${train[@]}" --profile --impls ours
    record train-d20-compiled "skipped (no reference in this bundle: stage it with NANOCHAT_REFERENCE=<karpathy/nanochat checkout at 10231df> make gpu-bundle)"
fi
check decode "$on_gpu" -- "$bin" bench engine --device cuda --depth 20 --prompt-len 256 --max-tokens 256 --batch 8
finish "not run"
