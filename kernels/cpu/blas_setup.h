// The CPU kernels' BLAS (OpenBLAS): choosing its kernels for this CPU, and what it runs on.
// Needs no BLAS header, so the benchmarks and tests can report it.
#pragma once
#include <string>

namespace vitscuda::kernels::detail {

// Makes OpenBLAS use the kernels of this CPU's instruction sets when it did not recognise the CPU
// (blas_setup.cpp); runs once, and every gemm of kernels/cpu calls it before its first product.
void ensure_blas_kernels();

// openblas_get_config() after ensure_blas_kernels(): version, build options and the kernels in use
// ("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY USE_OPENMP SkylakeX MAX_THREADS=64").
std::string blas_description();

}  // namespace vitscuda::kernels::detail
