// Helpers shared by the test binaries.
#pragma once
#include <string>

#include "engine/tensor.h"

namespace vitscuda::testing {

// Path of a file under the source tree's tests/data.
std::string data_path(const std::string& relative);
// A fresh empty directory under the build tree for one test's files.
std::string temp_dir(const std::string& name);
// Max |a - b| over all elements (shapes must match).
double max_abs_diff(const Tensor& a, const Tensor& b);
// ||a - b|| / ||b||.
double relative_l2(const Tensor& a, const Tensor& b);

// Runs a shell command; its exit status and everything it printed (stdout and stderr).
struct CommandResult {
  int status = -1;
  std::string output;
};
CommandResult run_command(const std::string& command);
// Path of a program built in this build tree (vitscuda, weights_convert).
std::string binary_path(const std::string& name);

}  // namespace vitscuda::testing
