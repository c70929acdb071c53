// The parameter set we declare must be exactly transformers' state dict for the
// facebook/mms-tts-eng architecture (names with legacy weight_g/weight_v, shapes).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "model/vits.h"
#include "support/test_support.h"

using namespace vitscuda;

TEST(Architecture, MmsTtsEngNamesAndShapesMatchTransformers) {
  io::VitsConfig config = io::VitsConfig::from_file(vitscuda::testing::data_path("mms_tts_eng/config.json"));
  ParameterStore store;
  model::declare_vits(config, store);

  std::ifstream in(vitscuda::testing::data_path("mms_tts_eng/state_dict.txt"));
  ASSERT_TRUE(in) << "tests/data/mms_tts_eng/state_dict.txt missing";
  std::vector<std::pair<std::string, std::string>> expected;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    expected.emplace_back(line.substr(0, tab), line.substr(tab + 1));
  }
  std::vector<std::pair<std::string, std::string>> ours;
  for (const ParameterInfo& p : store.params()) {
    std::string dims;
    for (int64_t d : p.shape) dims += (dims.empty() ? "" : ",") + std::to_string(d);
    ours.emplace_back(p.name, dims);
  }
  std::sort(ours.begin(), ours.end());
  std::sort(expected.begin(), expected.end());
  std::vector<std::pair<std::string, std::string>> only_ours, only_expected;
  std::set_difference(ours.begin(), ours.end(), expected.begin(), expected.end(), std::back_inserter(only_ours));
  std::set_difference(expected.begin(), expected.end(), ours.begin(), ours.end(), std::back_inserter(only_expected));
  for (const auto& [n, s] : only_ours) ADD_FAILURE() << "declared but not in transformers: " << n << " [" << s << "]";
  for (const auto& [n, s] : only_expected) ADD_FAILURE() << "in transformers but not declared: " << n << " [" << s << "]";
  EXPECT_EQ(ours.size(), expected.size());
}
