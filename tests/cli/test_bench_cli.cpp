// The benchmark programs refuse what they cannot run: a --setting that names none of bench_train's
// settings, a malformed bench_synth --seconds list. Each must exit 2 with a message naming the bad
// argument (and, for a setting, the valid names) before any model is built, instead of running nothing
// and reporting success.
#include <gtest/gtest.h>

#include <string>

#include "support/test_support.h"

namespace {

using vitscuda::testing::binary_path;
using vitscuda::testing::data_path;
using vitscuda::testing::run_command;

std::string bench_train() {
  return binary_path("bench/bench_train") + " --device cpu --config " + data_path("mms_tts_eng/config.json");
}

TEST(BenchTrainCli, ListsTheSettingsOfTheGivenLength) {
  const auto r = run_command(bench_train() + " --seconds 2 --list");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* name : {"b4_whole_2s\n", "b4_whole_2s_recompute\n", "b16_seg32_2s\n", "b16_seg32_2s_recompute\n",
                           "adamw\n", "logmel\n"})
    EXPECT_NE(r.output.find(name), std::string::npos) << name << " missing from:\n" << r.output;
}

TEST(BenchTrainCli, RefusesAnUnknownSettingWithTheValidNames) {
  // b4_whole_10s is a valid name at the default --seconds 10, not at --seconds 2.
  const auto r = run_command(bench_train() + " --seconds 2 --setting b4_whole_10s");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--setting 'b4_whole_10s' matches none"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("b4_whole_2s, b4_whole_2s_recompute, b16_seg32_2s, b16_seg32_2s_recompute, adamw, logmel"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("-- b4_whole"), std::string::npos) << "a setting ran:\n" << r.output;
}

TEST(BenchTrainCli, RefusesWhenAnyOfSeveralSettingsIsUnknown) {
  const auto r = run_command(bench_train() + " --seconds 2 --setting b4_whole_2s --setting typo");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--setting 'typo' matches none"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("'b4_whole_2s' matches none"), std::string::npos) << r.output;
}

TEST(BenchTrainCli, ExactSettingsNameWholeSettings) {
  // "b4_whole" is part of two names but the whole of none.
  const auto r = run_command(bench_train() + " --seconds 2 --exact --setting b4_whole");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--setting 'b4_whole' matches none"), std::string::npos) << r.output;
}

TEST(BenchTrainCli, VaeAndFullHaveSegmentSettingsOnly) {
  for (const char* objective : {"vae", "full"}) {
    SCOPED_TRACE(objective);
    const auto listed = run_command(bench_train() + " --seconds 2 --list --objective " + objective);
    ASSERT_EQ(listed.status, 0) << listed.output;
    EXPECT_NE(listed.output.find("b16_seg32_2s\n"), std::string::npos) << listed.output;
    EXPECT_EQ(listed.output.find("b4_whole"), std::string::npos) << listed.output;
    // A whole-utterance setting is refused before anything runs, with the valid names.
    const auto refused = run_command(bench_train() + " --seconds 2 --setting b4_whole_2s --objective " + objective);
    EXPECT_EQ(refused.status, 2) << refused.output;
    EXPECT_NE(refused.output.find("--setting 'b4_whole_2s' matches none"), std::string::npos) << refused.output;
    EXPECT_NE(refused.output.find("b16_seg32_2s, b16_seg32_2s_recompute, adamw, logmel"), std::string::npos)
        << refused.output;
  }
}

TEST(BenchSynthCli, RefusesAMalformedSecondsList) {
  const auto r = run_command(binary_path("bench/bench_synth") + " --device cpu --config " +
                             data_path("mms_tts_eng/config.json") + " --seconds 2,ten");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("'ten' in '2,ten' is not a positive number"), std::string::npos) << r.output;
}

TEST(BenchSynthCli, RefusesABatchBelowOne) {
  const auto r = run_command(binary_path("bench/bench_synth") + " --device cpu --config " +
                             data_path("mms_tts_eng/config.json") + " --batch 0");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--batch and --runs must be >= 1"), std::string::npos) << r.output;
}

}  // namespace
