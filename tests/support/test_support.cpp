#include "support/test_support.h"

#include <sys/wait.h>

#include <array>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <random>
#include <stdexcept>

#include "common/error.h"
#include "engine/random.h"
#include "kernels/backend.h"

namespace vitscuda::testing {

namespace {
std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::string(fallback);
}
}  // namespace

std::string source_dir() { return env_or("VITSCUDA_TEST_SOURCE_DIR", VITSCUDA_SOURCE_DIR); }
std::string binary_dir() { return env_or("VITSCUDA_TEST_BINARY_DIR", VITSCUDA_BINARY_DIR); }

std::string data_path(const std::string& relative) { return source_dir() + "/tests/data/" + relative; }

std::string temp_dir(const std::string& name) {
  std::filesystem::path p = std::filesystem::path(binary_dir()) / "test_tmp" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

Tensor normal_tensor(const Shape& shape, uint32_t seed, double scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = normal(gen);
  return Tensor::from_vector(v, shape);
}

Tensor uniform_tensor(const Shape& shape, uint64_t seed, double lo, double hi) {
  Tensor t = Tensor::empty(shape);
  Rng rng(seed);
  rng.fill_uniform(t, lo, hi);
  return t;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool cuda_available(std::string* why) { return kernels::cuda_device_available(why); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) throw std::runtime_error("max_abs_diff: " + a.describe() + " vs " + b.describe());
  Tensor ad = a.to(Device::CPU).to(DType::F64), bd = b.to(Device::CPU).to(DType::F64);
  const double* x = ad.data<double>();
  const double* y = bd.data<double>();
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

double relative_l2(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) throw std::runtime_error("relative_l2: " + a.describe() + " vs " + b.describe());
  Tensor ad = a.to(Device::CPU).to(DType::F64), bd = b.to(Device::CPU).to(DType::F64);
  const double* x = ad.data<double>();
  const double* y = bd.data<double>();
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::map<std::string, CaseArray> read_case_file(const std::string& relative,
                                                const std::vector<std::string>& skip_keywords) {
  const std::string path = data_path(relative);
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::map<std::string, CaseArray> out;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string name, token;
    ls >> name;
    if (std::find(skip_keywords.begin(), skip_keywords.end(), name) != skip_keywords.end()) continue;
    int ndim = -1;
    ls >> ndim;
    CaseArray a;
    for (int d = 0; d < ndim; ++d) {
      int64_t dim = -1;
      ls >> dim;
      a.shape.push_back(dim);
    }
    while (ls >> token) a.values.push_back(std::strtod(token.c_str(), nullptr));
    if (ndim < 0 || static_cast<int64_t>(a.values.size()) != shape_numel(a.shape))
      throw std::runtime_error(path + ":" + std::to_string(line_no) + ": '" + name + "' has " +
                               std::to_string(a.values.size()) + " values for shape " + shape_str(a.shape));
    if (out.count(name)) throw std::runtime_error(path + ":" + std::to_string(line_no) + ": duplicate array " + name);
    out[name] = std::move(a);
  }
  return out;
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

std::string binary_path(const std::string& name) { return binary_dir() + "/" + name; }

}  // namespace vitscuda::testing
