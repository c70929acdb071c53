// The op case list (tests/support/op_cases.h) on the CPU:
//   - OpCases/Gradcheck.MatchesCentralDifferences/<case>: the tape's gradients of every
//     differentiable input against central differences in f64 at the case's small shapes
//     (support/gradcheck.h); a case without differentiable inputs must record nothing;
//   - OpCases/AtVitsShape.RunsForwardAndBackward/<case>: the VITS-size inputs that CUDA and
//     bench_kernels use build, run forward and backward in f32 on the CPU (so a wrong case shows
//     here, not only on a GPU machine), with finite outputs and gradients exactly for the
//     differentiable inputs;
//   - OpCaseCoverage: every op declared in engine/ops*.h has a case or a stated exemption;
//   - OpCaseTolerance: the CUDA comparisons accept rounding and reject a wrong element.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "support/gradcheck.h"
#include "support/op_cases.h"
#include "support/test_support.h"

namespace vitscuda {
namespace {

using testing::CaseSize;
using testing::OpCase;

std::string case_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

bool all_finite(const Tensor& t) {
  for (float v : t.to_float_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

class Gradcheck : public ::testing::TestWithParam<std::string> {};

TEST_P(Gradcheck, MatchesCentralDifferences) {
  const OpCase& c = testing::op_case(GetParam());
  const std::vector<Tensor> inputs = testing::case_inputs(c, CaseSize::Small);
  SCOPED_TRACE(c.name + ": " + testing::describe_inputs(c, inputs));
  if (!c.any_differentiable()) {
    // No gradient flows through this op: with every input requiring one, nothing may be recorded,
    // or, for an op that refuses such inputs, a clear error.
    std::vector<Tensor> leaves;
    for (const Tensor& t : inputs) leaves.push_back(testing::requiring_grad(t.clone()));
    autograd::Tape tape;
    autograd::RecordingScope recording(tape);
    if (c.refuses_gradient) {
      EXPECT_THROW(c.build(leaves), Error);
      EXPECT_EQ(tape.size(), 0u);
      return;
    }
    EXPECT_FALSE(c.build(leaves).requires_grad());
    EXPECT_EQ(tape.size(), 0u);
    return;
  }
  const std::vector<testing::InputGradcheck> checks = testing::gradcheck(c.build, inputs, c.differentiable());
  for (size_t i = 0; i < checks.size(); ++i) {
    if (!checks[i].checked) continue;
    ASSERT_TRUE(checks[i].analytic.defined()) << "input " << c.inputs[i].name << " got no gradient";
    EXPECT_LT(checks[i].error, c.gradcheck_tolerance) << "gradient of " << c.inputs[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(OpCases, Gradcheck, ::testing::ValuesIn(testing::op_case_names()), case_name);

class AtVitsShape : public ::testing::TestWithParam<std::string> {};

TEST_P(AtVitsShape, RunsForwardAndBackward) {
  const OpCase& c = testing::op_case(GetParam());
  const std::vector<Tensor> values = testing::case_inputs(c, CaseSize::Large);
  SCOPED_TRACE(c.name + ": " + testing::describe_inputs(c, values));
  const std::vector<Tensor> placed = testing::place_inputs(c, values, Device::CPU, DType::F32);
  for (size_t i = 0; i < placed.size(); ++i)
    EXPECT_EQ(placed[i].dtype(), c.inputs[i].host ? DType::F64 : DType::F32) << c.inputs[i].name;
  const Tensor y = testing::run_forward(c, placed);
  EXPECT_EQ(y.dtype(), DType::F32);
  EXPECT_GT(y.numel(), 0);
  EXPECT_TRUE(all_finite(y));
  if (!c.any_differentiable()) return;
  const std::vector<Tensor> grads = testing::run_gradients(c, placed);
  ASSERT_EQ(grads.size(), placed.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    SCOPED_TRACE(c.inputs[i].name);
    if (!c.inputs[i].differentiable) {
      EXPECT_FALSE(grads[i].defined());
      continue;
    }
    ASSERT_TRUE(grads[i].defined());
    EXPECT_EQ(grads[i].shape(), placed[i].shape());
    EXPECT_TRUE(all_finite(grads[i]));
    EXPECT_GT(testing::max_abs_diff(grads[i], Tensor::zeros(grads[i].shape())), 0.0) << "an all-zero gradient";
  }
}

INSTANTIATE_TEST_SUITE_P(OpCases, AtVitsShape, ::testing::ValuesIn(testing::op_case_names()), case_name);

// Ops declared in engine/ops*.h that need no case, with the reason. Empty today: every op has one.
const std::map<std::string, std::string> kCoverageExemptions = {};

// The function names declared in namespace vitscuda::ops by the engine's op headers: lines
// "Tensor name(", "std::pair<Tensor, Tensor> name(", "std::vector<Tensor> name(" or, for an op whose result
// is a host array (the alignment search's map), "std::vector<int32_t> name(".
std::set<std::string> declared_ops() {
  std::set<std::string> names;
  const std::regex declaration(R"(^(?:Tensor|std::pair<Tensor, Tensor>|std::vector<Tensor>|std::vector<int32_t>))"
                               R"(\s+([a-z_0-9]+)\()");
  const std::filesystem::path engine = std::filesystem::path(testing::source_dir()) / "engine";
  for (const auto& entry : std::filesystem::directory_iterator(engine)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind("ops", 0) != 0 || entry.path().extension() != ".h") continue;
    std::ifstream in(entry.path());
    std::string line;
    bool in_ops = false;
    while (std::getline(in, line)) {
      if (line.rfind("namespace vitscuda::ops", 0) == 0) in_ops = true;
      if (line.rfind("}  // namespace vitscuda::ops", 0) == 0) in_ops = false;
      std::smatch m;
      if (in_ops && std::regex_search(line, m, declaration)) names.insert(m[1]);
    }
  }
  return names;
}

TEST(OpCaseCoverage, EveryOpDeclaredInTheEngineHasACase) {
  const std::set<std::string> declared = declared_ops();
  // The parser must see the header: engine/ops.h declares more than thirty ops.
  ASSERT_GT(declared.size(), 30u) << "parsed " << declared.size() << " ops from " << testing::source_dir()
                                  << "/engine/ops*.h";
  for (const char* known : {"conv1d", "layer_norm_channels", "rational_quadratic_spline", "gather_frames",
                           "monotonic_alignment_search"})
    EXPECT_EQ(declared.count(known), 1u) << known;
  std::set<std::string> covered;
  for (const OpCase& c : testing::op_cases()) covered.insert(c.ops.begin(), c.ops.end());
  for (const std::string& op : declared)
    EXPECT_TRUE(covered.count(op) || kCoverageExemptions.count(op))
        << "ops::" << op << " is declared in engine/ops*.h but no case in tests/support/op_cases.cpp exercises it "
        << "(add one there, or an exemption with its reason in tests/engine/test_op_cases.cpp)";
  for (const std::string& op : covered)
    EXPECT_EQ(declared.count(op), 1u) << "an op case names ops::" << op << ", which engine/ops*.h does not declare";
  for (const auto& [op, reason] : kCoverageExemptions) {
    EXPECT_EQ(declared.count(op), 1u) << "the exemption of ops::" << op << " names no declared op";
    EXPECT_EQ(covered.count(op), 0u) << "ops::" << op << " is exempt (" << reason << ") but has a case";
  }
}

TEST(OpCaseCoverage, CaseNamesAreUniqueAndEveryCaseHasItsShapes) {
  std::set<std::string> names;
  for (const OpCase& c : testing::op_cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(names.insert(c.name).second);
    EXPECT_EQ(&testing::op_case(c.name), &c);
    for (const testing::InputSpec& s : c.inputs) {
      EXPECT_FALSE(s.small.empty()) << s.name;
      EXPECT_EQ(s.small.size(), s.large.size()) << s.name;
      EXPECT_LE(shape_numel(s.small), shape_numel(s.large)) << s.name;
      EXPECT_FALSE(s.host && s.differentiable) << s.name << ": a host input cannot be differentiable";
    }
    EXPECT_FALSE(c.tolerance.reason.empty());
  }
  EXPECT_THROW(testing::op_case("no_such_op"), Error);
}

TEST(OpCaseTolerance, ComparisonsAcceptRoundingAndRejectAWrongElement) {
  const Tensor ref = testing::uniform_tensor({4, 50}, 3, 0.5, 2.0);
  const std::vector<float> base = ref.to_float_vector();
  auto with = [&](size_t i, float v) {
    std::vector<float> c = base;
    c[i] = v;
    return Tensor::from_vector(c, ref.shape());
  };
  const Tensor one_ulp = with(7, std::nextafter(base[7], 10.0f));
  const Tensor wrong = with(7, base[7] + 1.0f);
  const Tensor nan = with(7, NAN);
  for (const testing::Tolerance* t : {&testing::kExact, &testing::kPointwise, &testing::kReduction, &testing::kCudnn,
                                      &testing::kNormalisation, &testing::kWeightNorm, &testing::kSpline}) {
    SCOPED_TRACE(t->name);
    EXPECT_TRUE(testing::compare_forward(*t, ref, ref).ok);
    EXPECT_FALSE(testing::compare_forward(*t, wrong, ref).ok) << testing::compare_forward(*t, wrong, ref).detail;
    EXPECT_FALSE(testing::compare_forward(*t, nan, ref).ok);
    EXPECT_FALSE(testing::compare_forward(*t, ref.reshape({200}), ref).ok) << "a shape mismatch";
    EXPECT_EQ(testing::compare_forward(*t, one_ulp, ref).ok, t->forward != testing::Tolerance::Kind::Exact);
    EXPECT_TRUE(testing::compare_gradient(*t, one_ulp, ref).ok);
    EXPECT_FALSE(testing::compare_gradient(*t, wrong, ref).ok);
  }
}

}  // namespace
}  // namespace vitscuda
