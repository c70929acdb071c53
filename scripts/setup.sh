#!/usr/bin/env bash
# Installs every missing Debian dependency (idempotent) and builds vitscuda (Release).
# Usage: scripts/setup.sh [--with-uroman] [BUILD_DIR]   (default: build). Set VITSCUDA_CMAKE_ARGS for extra CMake
# flags. --with-uroman also installs the PyPI uroman package (the romaniser of tokenizer_config.json's
# is_uroman=true) into the project's own Python environment, .venv-uroman/ at the repository root, where
# vitscuda looks for it (or set VITSCUDA_UROMAN_PYTHON to another Python that can import uroman).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
with_uroman=0 build=""
while (($#)); do
  case "$1" in
    --with-uroman) with_uroman=1; shift ;;
    -*) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
    *) build="$1"; shift ;;
  esac
done
build="${build:-$root/build}"

packages=(build-essential cmake ninja-build pkg-config libsndfile1-dev libsoxr-dev libcli11-dev nlohmann-json3-dev
  libopenblas-openmp-dev libdnnl-dev libgtest-dev libgmock-dev libbenchmark-dev espeak-ng libespeak-ng-dev)
((with_uroman)) && packages+=(python3 python3-venv)
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

if ((with_uroman)); then
  # The version the golden romanisations (tests/data/io/frontend_cases.json) were made with.
  uroman_version=1.3.1.1
  venv="$root/.venv-uroman"
  if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('uroman') != '$uroman_version')" \
      2>/dev/null; then
    echo "setup: installing uroman $uroman_version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q "uroman==$uroman_version"
  fi
fi

# shellcheck disable=SC2086
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${VITSCUDA_CMAKE_ARGS:-}
# VITSCUDA_BUILD_TARGETS limits the build (the demo needs only the programs).
targets=()
for t in ${VITSCUDA_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
# nproc alone would honour an OMP_NUM_THREADS set by the caller (one thread for tests is not one job for builds).
cmake --build "$build" -j "$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)" "${targets[@]}"
echo "setup: built in $build"
