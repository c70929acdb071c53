// Duration predictors against transformers: VitsStochasticDurationPredictor (reverse, with the
// captured torch.randn draw) and VitsDurationPredictor, on tiny perturbed configs made by
// tools/golden/make_duration_cases.py. Loading the file by name also checks that our parameter
// names and shapes are exactly transformers' state-dict entries.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/ops.h"
#include "engine/parameters.h"
#include "io/hf_config.h"
#include "model/duration_predictor.h"
#include "support/test_support.h"

using namespace vitscuda;

namespace {

// Both sides compute in fp32. The longest chain (conv_pre, a 2-layer depth-separable block, conv_proj,
// then per flow conv_pre, another 2-layer block, conv_proj and the spline, then the affine flow) is about
// ten layers of sums over <= 48 O(1) terms, layer norms and divisions; torch's own fp32 output differs
// from its fp64 output by at most 2.2e-6 on these cases (printed by the generator), so 1e-5 leaves margin
// for a different summation order while a wrong index, eps, flip or flow order moves outputs by > 1e-2.
constexpr double kTolerance = 1e-5;

struct DurationCase {
  std::string name;
  nlohmann::json config_fields;
  std::map<std::string, Tensor> tensors;
};

Tensor parse_tensor(std::istringstream& in, const std::string& name, const std::string& where) {
  int ndim = -1;
  in >> ndim;
  VC_CHECK(in && ndim >= 0 && ndim <= 4, where << ": tensor " << name << " has a bad ndim");
  Shape shape(static_cast<size_t>(ndim));
  for (auto& d : shape) {
    in >> d;
    VC_CHECK(in && d > 0, where << ": tensor " << name << " has a bad dimension");
  }
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (auto& v : values) {
    in >> v;
    VC_CHECK(in, where << ": tensor " << name << " has fewer than " << values.size() << " values");
  }
  std::string extra;
  VC_CHECK(!(in >> extra), where << ": tensor " << name << " has more than " << values.size() << " values");
  return Tensor::from_vector(values, shape);
}

std::map<std::string, DurationCase> load_cases(const std::string& path) {
  std::ifstream file(path);
  VC_CHECK(file, path << ": cannot open");
  std::map<std::string, DurationCase> cases;
  DurationCase* current = nullptr;
  std::string line;
  for (int line_no = 1; std::getline(file, line); ++line_no) {
    if (line.empty() || line[0] == '#') continue;
    const std::string where = path + ":" + std::to_string(line_no);
    std::istringstream in(line);
    std::string head;
    in >> head;
    if (head == "case") {
      std::string name;
      in >> name;
      VC_CHECK(!name.empty() && !cases.count(name), where << ": missing or duplicate case name");
      current = &cases[name];
      current->name = name;
    } else if (head == "config") {
      VC_CHECK(current, where << ": config before any case");
      std::string rest;
      std::getline(in, rest);
      current->config_fields = nlohmann::json::parse(rest);
    } else {
      VC_CHECK(current, where << ": tensor before any case");
      VC_CHECK(!current->tensors.count(head), where << ": duplicate tensor " << head);
      current->tensors[head] = parse_tensor(in, head, where);
    }
  }
  return cases;
}

const std::map<std::string, DurationCase>& all_cases() {
  static const std::map<std::string, DurationCase> cases =
      load_cases(vitscuda::testing::data_path("model/duration_cases.txt"));
  return cases;
}

const DurationCase& get_case(const std::string& name) {
  auto it = all_cases().find(name);
  VC_CHECK(it != all_cases().end(), "duration_cases.txt has no case " << name);
  return it->second;
}

Tensor find_or_undefined(const DurationCase& c, const std::string& name) {
  auto it = c.tensors.find(name);
  return it == c.tensors.end() ? Tensor() : it->second;
}

bool is_parameter(const std::string& name) { return name.rfind("duration_predictor.", 0) == 0; }

// Declares the predictor, checks the declared names/shapes against the file's, and copies the values in.
ParameterStore load_store(const io::VitsConfig& config, const DurationCase& c) {
  ParameterStore store;
  model::declare_duration_predictor(config, store);
  store.finalize();
  std::set<std::string> declared;
  for (const ParameterInfo& info : store.params()) {
    declared.insert(info.name);
    auto it = c.tensors.find(info.name);
    EXPECT_NE(it, c.tensors.end()) << c.name << ": declared parameter " << info.name << " is not in transformers' state dict";
    if (it == c.tensors.end()) continue;
    EXPECT_EQ(it->second.shape(), info.shape)
        << c.name << ": " << info.name << " is " << shape_str(info.shape) << " here, " << shape_str(it->second.shape())
        << " in transformers";
    if (it->second.shape() == info.shape) store.get(info.name).copy_from(it->second);
  }
  for (const auto& [name, tensor] : c.tensors)
    if (is_parameter(name)) EXPECT_TRUE(declared.count(name)) << c.name << ": transformers' " << name << " is not declared";
  return store;
}

class DurationPredictorParity : public ::testing::TestWithParam<std::string> {};

TEST_P(DurationPredictorParity, MatchesTransformers) {
  const DurationCase& c = get_case(GetParam());
  const io::VitsConfig config = io::VitsConfig::from_json(c.config_fields, c.name);
  ParameterStore store = load_store(config, c);
  ASSERT_FALSE(HasFailure()) << "parameter names or shapes differ; not running the predictor";

  const Tensor hidden = c.tensors.at("input.hidden_states");
  const Tensor mask = c.tensors.at("input.padding_mask");
  const Tensor speaker = find_or_undefined(c, "input.speaker_embeddings");
  const Tensor noise = find_or_undefined(c, "input.noise");
  const Tensor expected = c.tensors.at("output.log_duration");
  EXPECT_EQ(speaker.defined(), config.speaker_embedding_size != 0);
  EXPECT_EQ(noise.defined(), config.use_stochastic_duration_prediction);

  Tensor got =
      model::predict_log_durations(config, store, hidden, mask, speaker, noise, config.noise_scale_duration);
  ASSERT_EQ(got.shape(), expected.shape());
  const double err = vitscuda::testing::max_abs_diff(got, expected);
  std::cout << "[ duration ] " << c.name << ": max |ours - transformers| = " << err << "\n";
  EXPECT_LT(err, kTolerance) << c.name;

  // The reference is not degenerate (values of order one) and padded frames are exactly zero.
  const std::vector<float> e = expected.to_float_vector(), g = got.to_float_vector(), m = mask.to_float_vector();
  double max_abs_expected = 0;
  for (float v : e) max_abs_expected = std::max(max_abs_expected, std::fabs(static_cast<double>(v)));
  EXPECT_GT(max_abs_expected, 0.1);
  for (size_t i = 0; i < g.size(); ++i)
    if (m[i] == 0.0f) EXPECT_EQ(g[i], 0.0f) << c.name << ": padded frame " << i;
}

INSTANTIATE_TEST_SUITE_P(Cases, DurationPredictorParity,
                         ::testing::Values("stochastic_no_speaker", "stochastic_speaker", "plain_speaker",
                                           "plain_no_speaker"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(DurationPredictor, NoiseScaleAndNoiseChangeTheStochasticOutput) {
  const DurationCase& c = get_case("stochastic_speaker");
  const io::VitsConfig config = io::VitsConfig::from_json(c.config_fields, c.name);
  ParameterStore store = load_store(config, c);
  const Tensor hidden = c.tensors.at("input.hidden_states"), mask = c.tensors.at("input.padding_mask");
  const Tensor speaker = c.tensors.at("input.speaker_embeddings"), noise = c.tensors.at("input.noise");
  Tensor reference = model::predict_log_durations(config, store, hidden, mask, speaker, noise, 0.8);
  Tensor other_scale = model::predict_log_durations(config, store, hidden, mask, speaker, noise, 0.3);
  EXPECT_GT(vitscuda::testing::max_abs_diff(reference, other_scale), 1e-3);
  // The speaker conditioning reaches the output.
  Tensor other_speaker =
      model::predict_log_durations(config, store, hidden, mask, ops::scale(speaker, -1.0), noise, 0.8);
  EXPECT_GT(vitscuda::testing::max_abs_diff(reference, other_speaker), 1e-3);
}

TEST(DurationPredictor, RejectsMismatchedInputs) {
  const DurationCase& c = get_case("stochastic_no_speaker");
  const io::VitsConfig config = io::VitsConfig::from_json(c.config_fields, c.name);
  ParameterStore store = load_store(config, c);
  const Tensor hidden = c.tensors.at("input.hidden_states"), mask = c.tensors.at("input.padding_mask");
  const Tensor noise = c.tensors.at("input.noise");
  const int64_t B = hidden.dim(0), T = hidden.dim(2);
  // A speaker embedding without a cond layer.
  EXPECT_THROW(model::predict_log_durations(config, store, hidden, mask, Tensor::zeros({B, 6, 1}), noise, 0.8), Error);
  // Missing or wrongly shaped noise.
  EXPECT_THROW(model::predict_log_durations(config, store, hidden, mask, Tensor(), Tensor(), 0.8), Error);
  EXPECT_THROW(model::predict_log_durations(config, store, hidden, mask, Tensor(), Tensor::zeros({B, 2, T + 1}), 0.8),
               Error);
  // Mask of the wrong length; hidden states of the wrong width.
  EXPECT_THROW(model::predict_log_durations(config, store, hidden, Tensor::zeros({B, 1, T + 1}), Tensor(), noise, 0.8),
               Error);
  EXPECT_THROW(model::predict_log_durations(config, store, Tensor::zeros({B, config.hidden_size + 1, T}), mask,
                                            Tensor(), noise, 0.8),
               Error);
}

}  // namespace
