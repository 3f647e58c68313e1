# libtorch 2.11.0 (the +cu130 build) from the PyPI wheels of nix/wheels.nix, the same files `make setup`
# installs from manifests/python/runtime.lock on CPython 3.11 (the torch wheel here is the cp311 one). Laid out
# like that Python's site-packages directory,
#   $out/lib/python3.11/site-packages/{torch,nvidia}
# because build.rs derives the CUDA and NCCL include dirs from the parent of the torch dir
# (<site>/nvidia/cu13/include, <site>/nvidia/nccl/include), and torch's own libraries find the nvidia ones
# there. No Python is needed: torch-sys reads torch/include and torch/lib through LIBTORCH=<site>/torch.
#
# The wheels are manylinux binaries: autoPatchelfHook gives every ELF file the Nix loader and a RUNPATH of
# store paths (its own nvidia/*/lib dirs, gcc's libstdc++, zlib, rdma-core), replacing the wheel's
# $ORIGIN/../../nvidia/... entries. Left unresolved on purpose:
#   - libcuda.so.1: the NVIDIA driver's, from the host at run time (/run/opengl-driver/lib on NixOS,
#     appended to every RUNPATH; in a container the NVIDIA toolkit mounts it, see nix/image.nix);
#   - MPI/OpenSHMEM/PMIx/UCX/libfabric: only nvshmem's optional bootstrap and transport plugins, which
#     nvshmem dlopens on request and torch never asks for.
{ lib, stdenv, fetchurl, unzip, autoPatchelfHook, zlib, rdma-core }:

let
  wheels = import ./wheels.nix;
  # attrNames is sorted, so the unpack order is fixed.
  wheelFiles = map (name: fetchurl { inherit (wheels.${name}) url sha256; }) (builtins.attrNames wheels);
  sitePackages = "lib/python3.11/site-packages";
  torchVersion = wheels.torch.version;
in
stdenv.mkDerivation {
  pname = "libtorch-wheels";
  version = torchVersion;

  dontUnpack = true;
  dontConfigure = true;
  dontBuild = true;

  nativeBuildInputs = [ unzip autoPatchelfHook ];
  # libstdc++/libgcc_s (every library), zlib (cuDNN), rdma-core: libibverbs/libmlx5/librdmacm (cuFile's
  # RDMA library and nvshmem's InfiniBand transports; NCCL dlopens libibverbs itself when it finds an HCA).
  buildInputs = [ stdenv.cc.cc.lib zlib rdma-core ];

  autoPatchelfIgnoreMissingDeps = [
    "libcuda.so.1"
    "libmpi.so.40"
    "liboshmem.so.40"
    "libpmix.so.2"
    "libucp.so.0"
    "libucs.so.0"
    "libfabric.so.1"
  ];
  appendRunpaths = [ "/run/opengl-driver/lib" ];

  installPhase = ''
    runHook preInstall
    site="$out/${sitePackages}"
    mkdir -p "$site"
    for whl in ${toString wheelFiles}; do
      unzip -q -o "$whl" -d "$site"
    done

    # Every nvidia cu13 wheel carries its own scan logs under this one name; whichever was unpacked last
    # would win. Nothing reads them.
    rm -rf "$site/nvidia/cu13/.metadata"

    # torch-sys checks $LIBTORCH/build-version against the libtorch tch was generated for (2.11.0) when
    # the file exists; the wheel has none, so write it from torch/version.py ('2.11.0+cu130') and the check
    # runs (no LIBTORCH_BYPASS_VERSION_CHECK needed).
    sed -n "s/^__version__ = '\(.*\)'$/\1/p" "$site/torch/version.py" > "$site/torch/build-version"
    [ "$(cut -d+ -f1 "$site/torch/build-version")" = "${torchVersion}" ]

    # torch-sys links with -lgomp: let the linker find the wheel's own OpenMP runtime (the one
    # libtorch_cpu.so is built against) rather than gcc's.
    [ -e "$site/torch/lib/libgomp.so" ] || ln -s libgomp.so.1 "$site/torch/lib/libgomp.so"

    # What build.rs and torch-sys rely on.
    for f in torch/lib/libtorch_cuda.so torch/lib/libtorch_cpu.so torch/lib/libc10.so \
             torch/include/torch/csrc/api/include/torch/torch.h \
             nvidia/cu13/include/cuda_runtime_api.h nvidia/cu13/include/crt/host_defines.h \
             nvidia/nccl/include/nccl.h nvidia/nccl/lib/libnccl.so.2; do
      test -e "$site/$f" || { echo "missing $f after unpacking the wheels" >&2; exit 1; }
    done
    runHook postInstall
  '';

  # The NVIDIA libraries come stripped; re-stripping ~4 GB gains nothing. autoPatchelfHook sets the
  # RUNPATHs (patchelf's shrink pass would only drop the driver dir again), and the Python files under
  # torch/ are never run, so their shebangs stay as they are.
  dontStrip = true;
  dontPatchELF = true;
  dontPatchShebangs = true;

  passthru = {
    inherit sitePackages torchVersion;
  };

  meta = {
    description = "libtorch ${torchVersion} (CUDA 13) and its NVIDIA libraries from the pinned PyPI wheels";
    homepage = "https://pytorch.org";
    # torch is BSD-3-Clause; the nvidia-* wheels are under NVIDIA's redistributable EULAs.
    license = with lib.licenses; [ bsd3 unfreeRedistributable ];
    platforms = [ "x86_64-linux" ];
  };
}
