// The CPU kernels' BLAS: OpenBLAS's OpenMP build, so that the kernels share one OpenMP thread pool
// with it (CMakeLists.txt links it by path; with the pthread build a second pool of spinning threads
// competes with the kernels' own for the cores, a quarter of the CPU synthesis time), running the
// kernels of this CPU's instruction sets, not the SSE3 fallback it uses for a CPU model it does not know
// (kernels/cpu/blas_setup.cpp: a fifth of the sgemm speed).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "kernels/cpu/blas_setup.h"

extern "C" int openblas_get_parallel(void);  // 0 sequential, 1 pthreads, 2 OpenMP

TEST(BlasBuild, OpenBlasIsTheOpenMpBuild) {
  EXPECT_EQ(openblas_get_parallel(), 2) << "linked OpenBLAS: " << vitscuda::kernels::detail::blas_description();
}

TEST(BlasBuild, RunsTheKernelsOfThisCpusInstructionSets) {
  const std::string description = vitscuda::kernels::detail::blas_description();
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    const char* forced = std::getenv("OPENBLAS_CORETYPE");
    EXPECT_EQ(description.find(" Prescott "), std::string::npos)
        << description << " on a CPU with AVX2 and FMA (OPENBLAS_CORETYPE=" << (forced ? forced : "unset") << ")";
  }
  EXPECT_NE(description.find("OpenBLAS"), std::string::npos) << description;
}
