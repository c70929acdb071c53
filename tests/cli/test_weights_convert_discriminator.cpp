// weights_convert with a finetune-hf-vits "-train" checkpoint (tests/data/golden/discriminator/tiny_train, written
// by tools/golden/make_discriminator_cases.py with VitsModelForPreTraining.save_pretrained): the discriminator goes
// to discriminator.safetensors on import and comes back, bit for bit, with export --with-discriminator.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "support/test_support.h"

using namespace vitscuda;
namespace fs = std::filesystem;

namespace {

using RunResult = vitscuda::testing::CommandResult;
RunResult run(const std::string& command) { return vitscuda::testing::run_command(command); }
std::string convert() { return vitscuda::testing::binary_path("weights_convert"); }
std::string train_fixture() { return vitscuda::testing::data_path("golden/discriminator/tiny_train"); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

bool is_discriminator(const std::string& name) { return name.rfind("discriminator.", 0) == 0; }

// Every tensor of `expected` is in `got` with the same dtype, shape and bytes, and nothing else is; returns how
// many discriminator tensors were compared.
int expect_same_tensors(const std::string& expected_path, const std::string& got_path) {
  const io::SafetensorsFile expected = io::SafetensorsFile::open(expected_path);
  const io::SafetensorsFile got = io::SafetensorsFile::open(got_path);
  EXPECT_EQ(got.entries().size(), expected.entries().size()) << got_path;
  int discriminator = 0;
  for (const io::SafetensorsEntry& e : expected.entries()) {
    const io::SafetensorsEntry* g = got.find(e.name);
    if (g == nullptr) {
      ADD_FAILURE() << e.name << " missing from " << got_path;
      continue;
    }
    EXPECT_EQ(g->dtype, e.dtype) << e.name;
    EXPECT_EQ(g->shape, e.shape) << e.name;
    EXPECT_TRUE(got.raw_bytes(e.name) == expected.raw_bytes(e.name)) << "bytes of " << e.name << " differ";
    discriminator += is_discriminator(e.name);
  }
  return discriminator;
}

}  // namespace

TEST(WeightsConvertDiscriminator, TrainCheckpointRoundTripsBitForBit) {
  const std::string tmp = vitscuda::testing::temp_dir("disc_roundtrip");
  const RunResult imp = run(convert() + " import " + train_fixture() + " " + tmp + "/ours");
  ASSERT_EQ(imp.status, 0) << imp.output;
  EXPECT_NE(imp.output.find("read the discriminator: 72 tensors, plain weights, 6 sub-discriminators"),
            std::string::npos)
      << imp.output;
  // The generator's file holds the generator only; the discriminator sits beside it as weight_g / weight_v.
  const io::SafetensorsFile generator = io::SafetensorsFile::open(tmp + "/ours/model.safetensors");
  for (const io::SafetensorsEntry& e : generator.entries()) EXPECT_FALSE(is_discriminator(e.name)) << e.name;
  const io::SafetensorsFile disc = io::SafetensorsFile::open(tmp + "/ours/discriminator.safetensors");
  EXPECT_NE(disc.find("discriminator.discriminators.0.convs.0.weight_g"), nullptr);
  EXPECT_EQ(disc.metadata().at("vitscuda.discriminator_source_layout"), "plain");
  EXPECT_EQ(read_json(tmp + "/ours/config.json")["discriminator_scale_channels"], nlohmann::json({1, 8, 32, 64}));

  const RunResult exp = run(convert() + " export --with-discriminator " + tmp + "/ours " + tmp + "/hf");
  ASSERT_EQ(exp.status, 0) << exp.output;
  EXPECT_EQ(expect_same_tensors(train_fixture() + "/model.safetensors", tmp + "/hf/model.safetensors"), 72);
  const nlohmann::json config = read_json(tmp + "/hf/config.json");
  const nlohmann::json source = read_json(train_fixture() + "/config.json");
  for (const char* key : {"discriminator_kernel_size", "discriminator_stride", "discriminator_periods",
                          "discriminator_period_channels", "discriminator_scale_channels", "leaky_relu_slope"})
    EXPECT_EQ(config[key], source[key]) << key;

  // Plain export: the VitsModel alone, as before.
  const RunResult plain = run(convert() + " export " + tmp + "/ours " + tmp + "/plain");
  ASSERT_EQ(plain.status, 0) << plain.output;
  EXPECT_NE(plain.output.find("not exported (pass --with-discriminator)"), std::string::npos) << plain.output;
  const io::SafetensorsFile plain_file = io::SafetensorsFile::open(tmp + "/plain/model.safetensors");
  EXPECT_EQ(plain_file.entries().size(), generator.entries().size());
  for (const io::SafetensorsEntry& e : plain_file.entries()) EXPECT_FALSE(is_discriminator(e.name)) << e.name;
}

TEST(WeightsConvertDiscriminator, WeightNormLayoutsRoundTripToo) {
  const std::string tmp = vitscuda::testing::temp_dir("disc_layouts");
  ASSERT_EQ(run(convert() + " import " + train_fixture() + " " + tmp + "/ours").status, 0);
  for (const char* layout : {"legacy", "parametrizations"}) {
    const std::string out = tmp + "/" + layout;
    const RunResult exp = run(convert() + " export --with-discriminator --discriminator-layout " + layout + " " + tmp +
                              "/ours " + out + "/hf");
    ASSERT_EQ(exp.status, 0) << exp.output;
    const io::SafetensorsFile f = io::SafetensorsFile::open(out + "/hf/model.safetensors");
    const std::string g_name = std::string("discriminator.discriminators.1.final_conv.") +
                               (std::string(layout) == "legacy" ? "weight_g" : "parametrizations.weight.original0");
    EXPECT_NE(f.find(g_name), nullptr) << layout;
    // Imported again and exported in its own (source) layout: the same file contents.
    const RunResult imp = run(convert() + " import " + out + "/hf " + out + "/ours");
    ASSERT_EQ(imp.status, 0) << imp.output;
    EXPECT_NE(imp.output.find(std::string(layout) + " weights"), std::string::npos) << imp.output;
    ASSERT_EQ(run(convert() + " export --with-discriminator " + out + "/ours " + out + "/hf2").status, 0);
    EXPECT_EQ(expect_same_tensors(out + "/hf/model.safetensors", out + "/hf2/model.safetensors"), 108);  // g, v, b
  }
}

TEST(WeightsConvertDiscriminator, ConfigMismatchAndMissingFileAreNamed) {
  const std::string tmp = vitscuda::testing::temp_dir("disc_errors");
  fs::create_directories(tmp + "/train");
  for (const auto& entry : fs::directory_iterator(train_fixture()))
    fs::copy_file(entry.path(), tmp + "/train/" + entry.path().filename().string());
  nlohmann::json config = read_json(tmp + "/train/config.json");
  config["discriminator_period_channels"] = {1, 4, 8, 16, 32};
  std::ofstream(tmp + "/train/config.json") << config.dump(2);
  const RunResult imp = run(convert() + " import " + tmp + "/train " + tmp + "/out");
  EXPECT_NE(imp.status, 0);
  EXPECT_NE(
      imp.output.find("discriminator.discriminators.1.convs.3.weight: file [16, 16, 5, 1] vs config [32, 16, 5, 1]"),
      std::string::npos)
      << imp.output;
  EXPECT_FALSE(fs::exists(tmp + "/out")) << "nothing is written when the discriminator does not fit";

  // A model directory without a discriminator cannot export one.
  ASSERT_EQ(run(convert() + " import " + vitscuda::testing::data_path("golden/tiny_sdp") + " " + tmp + "/plain").status,
            0);
  const RunResult exp = run(convert() + " export --with-discriminator " + tmp + "/plain " + tmp + "/hf");
  EXPECT_NE(exp.status, 0);
  EXPECT_NE(exp.output.find("has no discriminator.safetensors"), std::string::npos) << exp.output;
}
