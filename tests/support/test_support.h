// Helpers shared by the test binaries.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <cstdint>

#include "engine/tensor.h"

namespace vitscuda::testing {

// The source and build trees: the configure-time paths, unless VITSCUDA_TEST_SOURCE_DIR /
// VITSCUDA_TEST_BINARY_DIR name others (test binaries run from a copy on another machine).
std::string source_dir();
std::string binary_dir();
// Path of a file under the source tree's tests/data.
std::string data_path(const std::string& relative);
// A fresh empty directory under the build tree for one test's files.
std::string temp_dir(const std::string& name);
// A tensor of normal values (mean 0, standard deviation `scale`) from std::mt19937(seed), in
// double precision (from_vector of doubles).
Tensor normal_tensor(const Shape& shape, uint32_t seed, double scale = 1.0);
// A float tensor of uniform values in [lo, hi) from the engine's Rng(seed).
Tensor uniform_tensor(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0);

// The message of the vitscuda::Error that f throws, or "" when it throws none.
std::string error_of(const std::function<void()>& f);

// Whether a usable CUDA device is present; if not, why (for the skip message).
bool cuda_available(std::string* why);

// Max |a - b| over all elements (shapes must match; either tensor may be on the GPU).
double max_abs_diff(const Tensor& a, const Tensor& b);
// ||a - b|| / ||b||.
double relative_l2(const Tensor& a, const Tensor& b);

// The reference case files written by tools/golden/*.py: one line per array,
// "name ndim d0 d1 ... v0 v1 ..." with values printed exactly (Python repr); "#" starts a comment line.
struct CaseArray {
  Shape shape;
  std::vector<double> values;
};
// Every array of DATA/relative (path under tests/data); throws naming the file and the array on a
// malformed line. Lines whose first word is in `skip_keywords` are ignored (other line kinds).
std::map<std::string, CaseArray> read_case_file(const std::string& relative,
                                                const std::vector<std::string>& skip_keywords = {});

// Runs a shell command; its exit status and everything it printed (stdout and stderr).
struct CommandResult {
  int status = -1;
  std::string output;
};
CommandResult run_command(const std::string& command);
// Path of a program built in this build tree (vitscuda, weights_convert).
std::string binary_path(const std::string& name);

}  // namespace vitscuda::testing

// Skips the calling test, with the reason, when no usable CUDA device is present.
#define VITSCUDA_REQUIRE_CUDA()                                                                           \
  do {                                                                                                    \
    std::string vc_why_;                                                                                  \
    if (!::vitscuda::testing::cuda_available(&vc_why_)) GTEST_SKIP() << "no CUDA device: " << vc_why_; \
  } while (0)
