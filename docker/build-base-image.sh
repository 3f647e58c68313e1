#!/usr/bin/env bash
# Makes the base image locally when no registry can be reached: a minimal Debian 12 (bookworm, the
# distribution the binary is built on, so glibc and libstdc++ match) from debootstrap, imported into the
# Docker engine and tagged TAG. Prints the image's content id (sha256:...), which `make image` passes as
# BASE_IMAGE so the Dockerfile's FROM is pinned by digest. An existing TAG is reused.
#
# usage: docker/build-base-image.sh TAG [MIRROR]
set -euo pipefail

tag=${1:?usage: $0 TAG [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}

if id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null); then
  echo "$id"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is missing: run make test-setup (or apt-get install debootstrap)" >&2; exit 1; }

# debootstrap needs root (it chroots and creates device nodes).
if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/nanochat-rootfs.XXXXXX")
trap '$sudo rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm (minbase) from $mirror ..." >&2
$sudo debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
  { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
# Like the official slim image: no package lists or caches, the same sources, a fixed machine id.
$sudo sh -c "rm -rf '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/cache/apt/*.bin '$rootfs'/var/cache/apt/archives/*.deb; \
  : > '$rootfs/etc/machine-id'"
$sudo tar --numeric-owner -C "$rootfs" -c . |
  docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "debootstrap --variant=minbase bookworm $mirror" - "$tag" >/dev/null
docker image inspect --format '{{.Id}}' "$tag"
