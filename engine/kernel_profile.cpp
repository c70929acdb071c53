#include "engine/kernel_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace vitscuda::kernel_profile {

namespace {

struct Totals {
  double seconds = 0;
  long calls = 0;
};

struct Profile {
  std::mutex mutex;
  std::map<std::string, Totals> by_kernel;

  ~Profile() {  // at exit: the table, largest first
    std::vector<std::pair<std::string, Totals>> rows(by_kernel.begin(), by_kernel.end());
    if (rows.empty()) return;
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    double total = 0;
    for (const auto& r : rows) total += r.second.seconds;
    std::fprintf(stderr, "\nCPU kernel time (VITSCUDA_KERNEL_PROFILE): %.3f s in kernels\n", total);
    std::fprintf(stderr, "%-36s %10s %9s %7s\n", "kernel", "seconds", "calls", "share");
    for (const auto& [name, t] : rows)
      std::fprintf(stderr, "%-36s %10.3f %9ld %6.1f%%\n", name.c_str(), t.seconds, t.calls, 100.0 * t.seconds / total);
  }
};

Profile& profile() {
  static Profile p;
  return p;
}

bool read_enabled() {
  const char* v = std::getenv("VITSCUDA_KERNEL_PROFILE");
  if (!v || !*v || std::strcmp(v, "0") == 0) return false;
  profile();  // constructed before the first add, so destroyed (and printed) after every user
  return true;
}

}  // namespace

bool enabled() {
  static const bool on = read_enabled();
  return on;
}

void add(const char* kernel, double seconds) {
  Profile& p = profile();
  std::lock_guard<std::mutex> lock(p.mutex);
  Totals& t = p.by_kernel[kernel];
  t.seconds += seconds;
  ++t.calls;
}

}  // namespace vitscuda::kernel_profile
