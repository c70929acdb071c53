// OpenBLAS's DYNAMIC_ARCH build (Debian's) picks its kernels from the CPU model at load time. A CPU it
// does not know (0.3.21 on a recent Xeon: "Intel(R) Xeon(R) Processor", family 6 model 143, with AVX-512)
// gets the fallback, Prescott's SSE3 kernels: sgemm at a fifth of the speed the same library reaches
// with its SkylakeX kernels there. When that happened and OPENBLAS_CORETYPE does not say otherwise, the
// kernels are chosen again from the instruction sets the CPU reports, before the first product.
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/blas_setup.h"

// Part of OpenBLAS's DYNAMIC_ARCH builds only: weak, so a build for one fixed CPU links too.
extern "C" {
char* openblas_get_config(void);
char* gotoblas_corename(void) __attribute__((weak));
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}

namespace vitscuda::kernels::detail {

namespace {

// The OpenBLAS core for this CPU's instruction sets, or nullptr to keep OpenBLAS's own choice.
const char* core_for_this_cpu() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return nullptr;
}

bool choose_blas_kernels() {
  if (!gotoblas_corename || !gotoblas_dynamic_init || !gotoblas_dynamic_quit) return false;  // not DYNAMIC_ARCH
  if (std::getenv("OPENBLAS_CORETYPE")) return false;  // the user's choice
  if (std::strcmp(gotoblas_corename(), "Prescott") != 0) return false;  // OpenBLAS knew the CPU
  const char* core = core_for_this_cpu();
  if (!core) return false;
  // OpenBLAS reads the variable in gotoblas_dynamic_init (a child process inherits the same choice).
  setenv("OPENBLAS_CORETYPE", core, 0);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  return true;
}

}  // namespace

void ensure_blas_kernels() {
  static const bool chosen = choose_blas_kernels();
  (void)chosen;
}

std::string blas_description() {
  ensure_blas_kernels();
  return openblas_get_config();
}

}  // namespace vitscuda::kernels::detail
