#include "support/test_support.h"

#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace vitscuda::testing {

std::string data_path(const std::string& relative) { return std::string(VITSCUDA_SOURCE_DIR) + "/tests/data/" + relative; }

std::string temp_dir(const std::string& name) {
  std::filesystem::path p = std::filesystem::path(VITSCUDA_BINARY_DIR) / "test_tmp" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) throw std::runtime_error("max_abs_diff: " + a.describe() + " vs " + b.describe());
  Tensor ad = a.to(DType::F64), bd = b.to(DType::F64);
  const double* x = ad.data<double>();
  const double* y = bd.data<double>();
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

double relative_l2(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) throw std::runtime_error("relative_l2: " + a.describe() + " vs " + b.describe());
  Tensor ad = a.to(DType::F64), bd = b.to(DType::F64);
  const double* x = ad.data<double>();
  const double* y = bd.data<double>();
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string binary_path(const std::string& name) { return std::string(VITSCUDA_BINARY_DIR) + "/" + name; }

}  // namespace vitscuda::testing
