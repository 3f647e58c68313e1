#!/usr/bin/env bash
# Assembles the image's build context: the stripped release binary, the shared libraries of the pinned
# torch wheel and its nvidia-* wheels (no headers, static archives, cmake files or Python bindings) and
# the manifests, in the layout the Dockerfile copies to /opt/nanochat. Files are hard-linked where the
# file system allows, so re-staging the ~4 GB of libraries is cheap.
#
# usage: docker/stage-context.sh CONTEXT_DIR BINARY SITE_PACKAGES
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 CONTEXT_DIR BINARY SITE_PACKAGES" >&2
  exit 2
fi
context=$1 binary=$2 site=$3
repo=$(cd "$(dirname "$0")/.." && pwd)

[ -x "$binary" ] || { echo "error: no binary at $binary: run make build" >&2; exit 1; }
[ -f "$site/torch/lib/libtorch_cuda.so" ] || { echo "error: no torch wheel under $site: run make setup" >&2; exit 1; }

rm -rf "$context"
root=$context/opt/nanochat
mkdir -p "$root/bin" "$root/lib/torch" "$root/nvidia"

link_or_copy() { cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"; }

# torch/lib: everything but the CPython extension library.
for lib in "$site"/torch/lib/*.so*; do
  case $(basename "$lib") in libtorch_python.so) continue ;; esac
  link_or_copy "$lib" "$root/lib/torch/"
done

# nvidia/<package>/lib: shared libraries only. Several are dlopen'ed (cuDNN's engine libraries,
# nvrtc-builtins, nvshmem's transports), so the set is kept rather than the ldd closure, minus what torch
# never loads: multi-GPU cuSOLVER, the alternate nvrtc, profiler back ends (CUPTI's perf/sampling/checkpoint
# helpers), and the BLAS/FFTW drop-in shims.
unused='^(libcusolverMg\.|libnvrtc\.alt\.|libnvrtc-builtins\.alt\.|libnvperf_|libpcsamplingutil|libcheckpoint|libnvblas|libcufftw)'
for libdir in "$site"/nvidia/*/lib; do
  package=$(basename "$(dirname "$libdir")")
  mkdir -p "$root/nvidia/$package/lib"
  find "$libdir" -maxdepth 1 -name '*.so*' -printf '%f\n' | grep -Ev "$unused" | while IFS= read -r lib; do
    link_or_copy "$libdir/$lib" "$root/nvidia/$package/lib/"
  done
done

cp -r "$repo/manifests" "$root/manifests"
cp "$binary" "$root/bin/nanochat"
strip --strip-unneeded "$root/bin/nanochat"
cp "$repo/docker/Dockerfile" "$context/Dockerfile"

echo "staged $(du -sh --apparent-size "$context" | cut -f1) in $context"
