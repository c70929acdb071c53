#!/usr/bin/env bash
# Builds a Release CUDA build (sm_75 and sm_90) and packs into .gpu/ what a GPU machine without
# Debian packages needs to run the test binaries, the CLI and the benchmarks there: the stripped
# binaries and the shared libraries they load that such a machine lacks (libsndfile and its codecs,
# libsoxr, OpenBLAS with libgfortran/libquadmath, libgomp, ...). The CUDA runtime, cuBLAS, cuFFT and
# cuDNN are left out on purpose: they must match that machine's driver, and scripts/gpu_check.sh
# finds them there (the toolkit's lib64 and PyTorch's nvidia/*/lib folders). libstdc++ and libgcc_s
# go to .gpu/lib/fallback, used only if that machine's own are too old.
#
# Usage: scripts/gpu_pack.sh [BUILD_DIR]      (default: build-gpu in the repo; .gpu/ is replaced)
# Environment: VITSCUDA_CMAKE_ARGS (extra CMake flags), GPU_PACK_LIMIT_MIB (default 55: the size
# .gpu/ may have, since everything that travels to the GPU machine must stay under 64 MiB).
# Then, on the GPU machine: the device tool's run with carry [".gpu"] and `bash scripts/gpu_check.sh`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(realpath -m "${1:-$root/build-gpu}")"
pack="$root/.gpu"
limit_mib="${GPU_PACK_LIMIT_MIB:-55}"

die() {
  echo "gpu_pack: error: $*" >&2
  exit 1
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

grep -qE '^[[:space:]]*add_subdirectory\([[:space:]]*bench[[:space:]]*\)' "$root/CMakeLists.txt" ||
  die "$root/CMakeLists.txt has no add_subdirectory(bench): bench_kernels and bench_synth would not be built"
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH="$PATH:/usr/local/cuda/bin"; fi
command -v nvcc >/dev/null || die "nvcc not found (PATH or /usr/local/cuda/bin): a CUDA build needs the CUDA toolkit"
for tool in ldd strip objdump tar xz; do command -v "$tool" >/dev/null || die "'$tool' not found"; done

# ---------------------------------------------------------------- build
echo "gpu_pack: building in $build (Release, CUDA archs 75;90)"
VITSCUDA_CMAKE_ARGS="-DVITSCUDA_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=75;90 -DVITSCUDA_BUILD_TESTS=ON ${VITSCUDA_CMAKE_ARGS:-}" \
  "$root/scripts/setup.sh" "$build"
grep -q 'VITSCUDA_HAVE_CUDA=1' "$build/compile_commands.json" ||
  die "the build in $build has no CUDA backend (VITSCUDA_HAVE_CUDA=1 is in no compile command): see its configure output"
grep -q 'CMAKE_CUDA_ARCHITECTURES:.*=75;90$' "$build/CMakeCache.txt" ||
  die "$build is not configured for CUDA archs 75;90 ($(grep CMAKE_CUDA_ARCHITECTURES: "$build/CMakeCache.txt"))"
source_dir="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")"
[[ -n "$source_dir" ]] || die "no CMAKE_HOME_DIRECTORY in $build/CMakeCache.txt"

mapfile -t tests < <(find "$build" -maxdepth 1 -type f -name 'test_*' -perm -u+x | sort)
((${#tests[@]})) || die "no test binaries (test_*) in $build"
programs=("$build/vitscuda" "$build/weights_convert" "$build/bench/bench_synth" "$build/bench/bench_kernels")
for p in "${programs[@]}"; do [[ -x "$p" ]] || die "$p was not built"; done
# Any other benchmark the bench folder builds (bench_train, ...) travels too.
while IFS= read -r p; do
  [[ " ${programs[*]} " == *" $p "* ]] || programs+=("$p")
done < <(find "$build/bench" -maxdepth 1 -type f -name 'bench_*' -perm -u+x | sort)

# ---------------------------------------------------------------- binaries
stage="$(mktemp -d "${TMPDIR:-/tmp}/gpu_pack.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib/fallback"
for p in "${tests[@]}" "${programs[@]}"; do
  install -m 755 "$p" "$stage/bin/"
  strip --strip-all "$stage/bin/$(basename "$p")"
done
# The tests read tests/data through VITSCUDA_SOURCE_DIR and write under VITSCUDA_BINARY_DIR, both
# compiled in as absolute paths of this machine; gpu_check.sh maps them to the copy there.
baked=no
grep -qaF "$source_dir" "$stage/bin/$(basename "${tests[0]}")" && baked=yes

# ---------------------------------------------------------------- libraries
# Left out: glibc and the loader (every Linux has them) and the CUDA libraries (the GPU machine's own).
system_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libmvec\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libutil\.so|libanl\.so)'
cuda_re='^(libcuda\.so|libcudart|libcublas|libcublasLt|libcufft|libcudnn|libnvrtc|libnvJitLink|libcurand|libcusolver|libcusparse|libnccl|libcupti|libnvToolsExt)'
fallback_re='^(libstdc\+\+\.so|libgcc_s\.so)'
declare -A bundled=() cuda_needed=()
for b in "$stage"/bin/*; do
  while read -r name arrow path _; do
    [[ "$arrow" == "=>" ]] || continue
    [[ "$path" == "not" ]] && die "$(basename "$b") needs $name, which is not found on this machine either"
    if [[ "$name" =~ $system_re ]]; then continue; fi
    if [[ "$name" =~ $cuda_re ]]; then cuda_needed[$name]=1; continue; fi
    bundled[$name]="$path"
  done < <(ldd "$b")
done
for name in "${!bundled[@]}"; do
  dest="$stage/lib"
  [[ "$name" =~ $fallback_re ]] && dest="$stage/lib/fallback"
  cp -L "${bundled[$name]}" "$dest/$name"
  chmod 644 "$dest/$name"
done
# libespeak-ng reads its phoneme tables and dictionaries at run time: the English ones travel with it
# (the phoneme front-end's language), and scripts/gpu_check.sh points ESPEAK_DATA_PATH at them.
espeak_data="$(pkg-config --variable=libdir espeak-ng 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)/espeak-ng-data"
[[ -d "$espeak_data" ]] || die "espeak-ng-data not found at $espeak_data (libespeak-ng-dev: scripts/setup.sh)"
mkdir -p "$stage/lib/espeak-ng-data"
for f in phontab phonindex phondata intonations en_dict; do cp -L "$espeak_data/$f" "$stage/lib/espeak-ng-data/"; done
cp -rL "$espeak_data/voices" "$espeak_data/lang" "$stage/lib/espeak-ng-data/" 2>/dev/null || true
glibc_needed="$(objdump -T "$stage"/bin/* "$stage"/lib/*.so* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 || true)"
glibcxx_needed="$(objdump -T "$stage"/bin/* "$stage"/lib/*.so* 2>/dev/null | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1 || true)"

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -n "$(git -C "$root" status --porcelain 2>/dev/null)" ]] && commit="$commit+uncommitted"
{
  echo "# Written by scripts/gpu_pack.sh; read by scripts/gpu_check.sh."
  echo "PACK_SOURCE_DIR='$source_dir'"
  echo "PACK_BINARY_DIR='$build'"
  echo "PACK_PATHS_BAKED=$baked"
  echo "PACK_COMMIT='$commit'"
  echo "PACK_DATE='$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
  echo "PACK_NVCC='$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')'"
  echo "PACK_CUDA_ARCHS='75;90'"
  echo "PACK_GLIBC_NEEDED='$glibc_needed'"
  echo "PACK_GLIBCXX_NEEDED='$glibcxx_needed'"
  echo "PACK_TESTS='$(cd "$stage/bin" && ls test_* | tr '\n' ' ' | sed 's/ $//')'"
  echo "PACK_CUDA_LIBS='$(printf '%s\n' "${!cuda_needed[@]}" | sort | tr '\n' ' ' | sed 's/ $//')'"
} >"$stage/manifest.env"

# ---------------------------------------------------------------- size
plain=$(du -sb "$stage" | cut -f1)
limit=$((limit_mib * 1048576))
if ((plain > limit)); then
  # Binaries and OpenBLAS compress about 4x; gpu_check.sh unpacks the payload into .gpu/ there.
  echo "gpu_pack: $(mib "$plain") unpacked is over ${limit_mib} MiB: compressing bin/ and lib/ into payload.tar.xz"
  tar -C "$stage" -cf - bin lib | xz -T0 -6 >"$stage/payload.tar.xz"
  rm -rf "${stage:?}/bin" "${stage:?}/lib"
  echo "PACK_PAYLOAD=payload.tar.xz" >>"$stage/manifest.env"
fi
size=$(du -sb "$stage" | cut -f1)
((size <= limit)) || die ".gpu would be $(mib "$size"), over ${limit_mib} MiB even compressed: $(du -sh "$stage"/* | tr '\n' ' ')"

# Everything that travels: tracked and untracked-not-ignored files, and .gpu (through carry when
# it is ignored, as an untracked folder otherwise). Checked before .gpu is replaced.
tree=$( (cd "$root" && git ls-files -co --exclude-standard -z -- . ':!.gpu' | du -cb --files0-from=- 2>/dev/null |
  tail -1 | cut -f1) || true)
[[ -n "$tree" ]] || die "cannot size the working tree with git ls-files in $root (not a git checkout?)"
total=$((tree + size))
((total <= 64 * 1048576)) ||
  die "the working tree ($(mib "$tree")) plus .gpu ($(mib "$size")) is $(mib "$total"), over the 64 MiB the device tool carries"

rm -rf "$pack"
mkdir -p "$pack"
cp -a "$stage/." "$pack/"
chmod 755 "$pack"
ignored=no
git -C "$root" check-ignore -q .gpu && ignored=yes
echo
echo "gpu_pack: packed $pack: $(mib "$size") ($(mib "$plain") unpacked)"
echo "  binaries (stripped): $(cd "$stage" && { [[ -d bin ]] && ls bin || tar -tJf payload.tar.xz bin | sed -n 's|^bin/\(.\+\)$|\1|p'; } | tr '\n' ' ')"
echo "  bundled libraries: $(printf '%s\n' "${!bundled[@]}" | sort | tr '\n' ' ')"
echo "  CUDA libraries expected on the GPU machine: ${!cuda_needed[*]}"
echo "  needs glibc >= ${glibc_needed#GLIBC_}, libstdc++ with ${glibcxx_needed} (else lib/fallback)"
echo "  test paths compiled in: source $source_dir, binary $build (baked: $baked; gpu_check.sh sets VITSCUDA_TEST_SOURCE_DIR and VITSCUDA_TEST_BINARY_DIR, which tests/support reads first)"
echo "  working tree that travels: $(mib "$tree") + .gpu = $(mib "$total") of 64 MiB"
[[ $ignored == yes ]] || echo "gpu_pack: warning: .gpu is not git-ignored: add /.gpu/ to .gitignore (it then travels only through carry)"
echo "gpu_pack: on the GPU machine: run with carry [\".gpu\"] and command: bash scripts/gpu_check.sh"
