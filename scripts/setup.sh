#!/usr/bin/env bash
# Installs every missing Debian dependency (idempotent) and builds vitscuda (Release).
# Usage: scripts/setup.sh [BUILD_DIR]   (default: build). Set VITSCUDA_CMAKE_ARGS for extra CMake flags.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"

packages=(build-essential cmake ninja-build pkg-config libsndfile1-dev libsoxr-dev libcli11-dev nlohmann-json3-dev
  libopenblas-dev libgtest-dev libgmock-dev libbenchmark-dev espeak-ng)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# shellcheck disable=SC2086
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${VITSCUDA_CMAKE_ARGS:-}
# VITSCUDA_BUILD_TARGETS limits the build (the demo needs only the programs).
targets=()
for t in ${VITSCUDA_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
echo "setup: built in $build"
