// The CPU kernels share one OpenMP thread pool with OpenBLAS: the linked OpenBLAS must be its OpenMP
// build (CMakeLists.txt links it by path). With the pthread build a second pool of spinning threads
// competes with the kernels' own for the cores, which cost a quarter of the CPU synthesis time.
#include <gtest/gtest.h>

#include <string>

extern "C" {
int openblas_get_parallel(void);  // 0 sequential, 1 pthreads, 2 OpenMP
char* openblas_get_config(void);
}

TEST(BlasBuild, OpenBlasIsTheOpenMpBuild) {
  EXPECT_EQ(openblas_get_parallel(), 2) << "linked OpenBLAS: " << openblas_get_config();
}
