// Host-side time per kernel, for finding where a CPU step spends its time: with VITSCUDA_KERNEL_PROFILE=1 in
// the environment, every kernel that VC_KERNEL runs on the CPU is timed, and at exit a table of total time,
// calls and share per kernel goes to stderr. Off (one branch per kernel call) otherwise. CUDA kernels are
// asynchronous and not timed here (nsys does that).
#pragma once
#include <chrono>

namespace vitscuda::kernel_profile {

bool enabled();
void add(const char* kernel, double seconds);

// Times the enclosing scope as one call of `kernel` when profiling is on.
class Scope {
 public:
  explicit Scope(const char* kernel) : kernel_(enabled() ? kernel : nullptr) {
    if (kernel_) start_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (kernel_) add(kernel_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* kernel_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace vitscuda::kernel_profile
