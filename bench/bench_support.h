// What the benchmark programs share: the exit status for "skipped", medians, the JSON results file
// and main()'s error handling.
#pragma once
#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "kernels/cpu/blas_setup.h"

namespace vitscuda::bench {

// The BLAS the CPU kernels run on, with the kernels it uses (kernels/cpu/blas_setup.h).
inline std::string blas_config() { return kernels::detail::blas_description(); }

// A benchmark that cannot run here (no usable CUDA device) exits with this (CTest's skip code).
constexpr int kExitSkipped = 77;

// The median of `v` (0 for an empty one).
inline double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Writes `j` to `path` through a temporary file and a rename, so a reader (or an interrupted run)
// never sees half a file.
inline void write_json_file(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    VC_CHECK(out, "cannot write " << tmp);
    out << j.dump(1) << "\n";
    VC_CHECK(out.good(), "error writing " << tmp);
  }
  VC_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename " << tmp << " to " << path);
}

// Exit status of a benchmark given arguments it cannot run (an unknown setting, a malformed list).
constexpr int kExitBadArguments = 2;

// The patterns of a name filter (bench_kernels --filter: a pattern selects every name that contains
// it) that select none of `names`.
inline std::vector<std::string> unmatched_patterns(const std::vector<std::string>& patterns,
                                                   const std::vector<std::string>& names) {
  std::vector<std::string> unmatched;
  for (const std::string& p : patterns)
    if (std::none_of(names.begin(), names.end(), [&](const std::string& n) { return n.find(p) != std::string::npos; }))
      unmatched.push_back(p);
  return unmatched;
}

// A typo in a name filter must not silently run nothing: prints "error: OPTION 'x' matches none of the
// names this program runs: a, b, c" to stderr for each of `unmatched`; returns whether there was any.
inline bool report_unmatched(const char* option, const std::vector<std::string>& unmatched,
                             const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  for (const std::string& p : unmatched)
    std::fprintf(stderr, "error: %s '%s' matches none of the names this program runs: %s\n", option, p.c_str(),
                 list.c_str());
  return !unmatched.empty();
}

// main() of a benchmark: runs `run`, and turns an exception into "error: ..." and exit status 1.
template <typename Run>
int bench_main(Run run, int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace vitscuda::bench
