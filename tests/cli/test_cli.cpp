// The command-line programs end to end: import/export round trips, init, synth, and
// a specific message plus a non-zero exit for each kind of bad input.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "io/audio.h"
#include "io/safetensors.h"
#include "support/test_support.h"

using namespace vitscuda;
namespace fs = std::filesystem;

namespace {

using RunResult = vitscuda::testing::CommandResult;
RunResult run(const std::string& command) { return vitscuda::testing::run_command(command); }

std::string bin(const std::string& name) { return vitscuda::testing::binary_path(name); }
std::string fixture(const std::string& name) { return vitscuda::testing::data_path("golden/" + name); }

void copy_dir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  for (const char* f : {"config.json", "model.safetensors", "vocab.json", "tokenizer_config.json"})
    if (fs::exists(fs::path(from) / f)) fs::copy_file(fs::path(from) / f, fs::path(to) / f, fs::copy_options::overwrite_existing);
}

// Rewrites DIR/model.safetensors through `edit` (which may drop, rename or reshape entries).
void edit_weights(const std::string& dir, const std::function<void(std::vector<io::SafetensorsWriteEntry>&)>& edit) {
  const std::string path = dir + "/model.safetensors";
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  std::vector<io::SafetensorsWriteEntry> entries;
  for (const auto& e : f.entries()) entries.push_back({e.name, e.dtype, e.shape, f.raw_bytes(e.name)});
  edit(entries);
  io::write_safetensors(path, entries, f.metadata());
}

}  // namespace

TEST(WeightsConvert, ImportThenExportIsBitExactForBothLayoutsAndDtypes) {
  for (const char* name : {"tiny_sdp", "tiny_dp_multispeaker"}) {
    const std::string tmp = vitscuda::testing::temp_dir(std::string("roundtrip_") + name);
    RunResult imp = run(bin("weights_convert") + " import " + fixture(name) + " " + tmp + "/ours");
    ASSERT_EQ(imp.status, 0) << imp.output;
    EXPECT_NE(imp.output.find("total"), std::string::npos) << imp.output;
    RunResult exp = run(bin("weights_convert") + " export " + tmp + "/ours " + tmp + "/hf");
    ASSERT_EQ(exp.status, 0) << exp.output;
    io::SafetensorsFile src = io::SafetensorsFile::open(fixture(name) + "/model.safetensors");
    io::SafetensorsFile back = io::SafetensorsFile::open(tmp + "/hf/model.safetensors");
    ASSERT_EQ(src.entries().size(), back.entries().size());
    for (const auto& e : src.entries()) {
      const io::SafetensorsEntry* b = back.find(e.name);
      ASSERT_NE(b, nullptr) << name << ": " << e.name << " missing after export";
      EXPECT_EQ(b->dtype, e.dtype) << e.name;
      EXPECT_EQ(b->shape, e.shape) << e.name;
      EXPECT_TRUE(back.raw_bytes(e.name) == src.raw_bytes(e.name)) << name << ": bytes of " << e.name << " differ";
    }
    // Exporting our own export again gives the identical file.
    RunResult imp2 = run(bin("weights_convert") + " import " + tmp + "/hf " + tmp + "/ours2");
    ASSERT_EQ(imp2.status, 0) << imp2.output;
    RunResult exp2 = run(bin("weights_convert") + " export " + tmp + "/ours2 " + tmp + "/hf2");
    ASSERT_EQ(exp2.status, 0) << exp2.output;
    std::ifstream a(tmp + "/hf/model.safetensors", std::ios::binary), b(tmp + "/hf2/model.safetensors", std::ios::binary);
    std::string sa((std::istreambuf_iterator<char>(a)), {}), sb((std::istreambuf_iterator<char>(b)), {});
    EXPECT_TRUE(sa == sb) << name << ": export of a re-import is not byte-identical";
  }
}

TEST(WeightsConvert, MissingTensorIsNamed) {
  const std::string tmp = vitscuda::testing::temp_dir("missing_tensor");
  copy_dir(fixture("tiny_sdp"), tmp + "/hf");
  std::string dropped;
  edit_weights(tmp + "/hf", [&](std::vector<io::SafetensorsWriteEntry>& e) {
    dropped = e[3].name;
    e.erase(e.begin() + 3);
  });
  RunResult r = run(bin("weights_convert") + " import " + tmp + "/hf " + tmp + "/out");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("missing"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp + "/out/model.safetensors")) << "a failed import must not write a model";
}

TEST(WeightsConvert, MisshapenAndUnexpectedTensorsAreNamed) {
  const std::string tmp = vitscuda::testing::temp_dir("misshapen_tensor");
  copy_dir(fixture("tiny_sdp"), tmp + "/hf");
  std::string reshaped;
  edit_weights(tmp + "/hf", [&](std::vector<io::SafetensorsWriteEntry>& e) {
    for (auto& x : e)
      if (x.shape.size() == 1 && x.shape[0] % 2 == 0 && x.shape[0] > 2) {
        reshaped = x.name;
        x.shape = {2, x.shape[0] / 2};
        break;
      }
    e.push_back({"decoder.extra_layer.weight", "F32", {2}, std::vector<uint8_t>(8, 0)});
  });
  ASSERT_FALSE(reshaped.empty());
  RunResult r = run(bin("weights_convert") + " import " + tmp + "/hf " + tmp + "/out");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("misshapen: " + reshaped), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unexpected: decoder.extra_layer.weight"), std::string::npos) << r.output;
}

TEST(WeightsConvert, InvalidConfigValueIsNamed) {
  const std::string tmp = vitscuda::testing::temp_dir("bad_config");
  copy_dir(fixture("tiny_sdp"), tmp + "/hf");
  nlohmann::json j = nlohmann::json::parse(std::ifstream(tmp + "/hf/config.json"));
  j["upsample_rates"] = nlohmann::json::array({4});
  std::ofstream(tmp + "/hf/config.json") << j.dump(2);
  RunResult r = run(bin("weights_convert") + " import " + tmp + "/hf " + tmp + "/out");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("upsample_rates"), std::string::npos) << r.output;
}

TEST(WeightsConvert, CorruptSafetensorsIsReported) {
  const std::string tmp = vitscuda::testing::temp_dir("corrupt_weights");
  copy_dir(fixture("tiny_sdp"), tmp + "/hf");
  fs::resize_file(tmp + "/hf/model.safetensors", fs::file_size(tmp + "/hf/model.safetensors") / 2);
  RunResult r = run(bin("weights_convert") + " import " + tmp + "/hf " + tmp + "/out");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("model.safetensors"), std::string::npos) << r.output;
}

TEST(WeightsConvert, InitMatchesTheMmsTtsEngArchitecture) {
  const std::string tmp = vitscuda::testing::temp_dir("init_mms");
  RunResult r = run(bin("weights_convert") + " init --config " + vitscuda::testing::data_path("mms_tts_eng/config.json") +
                    " --seed 3 " + tmp + "/model");
  ASSERT_EQ(r.status, 0) << r.output;
  io::SafetensorsFile f = io::SafetensorsFile::open(tmp + "/model/model.safetensors");
  std::ifstream in(vitscuda::testing::data_path("mms_tts_eng/state_dict.txt"));
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++n;
    const std::string name = line.substr(0, line.find('\t'));
    const io::SafetensorsEntry* e = f.find(name);
    ASSERT_NE(e, nullptr) << name;
    std::string dims;
    for (int64_t d : e->shape) dims += (dims.empty() ? "" : ",") + std::to_string(d);
    EXPECT_EQ(dims, line.substr(line.find('\t') + 1)) << name;
  }
  EXPECT_EQ(f.entries().size(), n);
}

TEST(Synth, WritesAudioOfTheReportedLength) {
  const std::string tmp = vitscuda::testing::temp_dir("synth");
  RunResult r = run(bin("vitscuda") + " synth --model " + fixture("tiny_sdp") + " --text \"hello world\" --out " + tmp +
                    "/out.wav --seed 7");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("real-time factor"), std::string::npos) << r.output;
  io::Audio a = io::read_audio(tmp + "/out.wav");
  EXPECT_GT(a.samples.size(), 0u);
  // Same seed, same audio; another seed, other audio.
  RunResult r2 = run(bin("vitscuda") + " synth --model " + fixture("tiny_sdp") + " --text \"hello world\" --out " + tmp +
                     "/out2.wav --seed 7");
  ASSERT_EQ(r2.status, 0) << r2.output;
  EXPECT_EQ(io::read_audio(tmp + "/out2.wav").samples, a.samples);
}

// VITSCUDA_KERNEL_PROFILE=1: at exit, a table of CPU kernel time per kernel on stderr, largest first, with
// the kernels synthesis runs; without it, no table.
TEST(Synth, KernelProfileTableOnRequest) {
  const std::string tmp = vitscuda::testing::temp_dir("kernel_profile");
  const std::string synth =
      " synth --device cpu --model " + fixture("tiny_sdp") + " --text \"hello world\" --out " + tmp + "/out.wav";
  RunResult r = run("VITSCUDA_KERNEL_PROFILE=1 " + bin("vitscuda") + synth);
  ASSERT_EQ(r.status, 0) << r.output;
  const size_t table = r.output.find("CPU kernel time (VITSCUDA_KERNEL_PROFILE)");
  ASSERT_NE(table, std::string::npos) << r.output;
  for (const char* kernel : {"conv1d_forward", "conv_transpose1d_forward", "unary_forward"})
    EXPECT_NE(r.output.find(std::string("\n") + kernel + " ", table), std::string::npos) << kernel << "\n" << r.output;
  RunResult quiet = run("VITSCUDA_KERNEL_PROFILE=0 " + bin("vitscuda") + synth);
  ASSERT_EQ(quiet.status, 0) << quiet.output;
  EXPECT_EQ(quiet.output.find("CPU kernel time"), std::string::npos) << quiet.output;
}

TEST(Synth, MultiSpeakerNeedsAValidSpeaker) {
  const std::string tmp = vitscuda::testing::temp_dir("synth_speaker");
  RunResult ok = run(bin("vitscuda") + " synth --model " + fixture("tiny_dp_multispeaker") +
                     " --text \"hello\" --speaker 2 --out " + tmp + "/a.wav");
  EXPECT_EQ(ok.status, 0) << ok.output;
  RunResult bad = run(bin("vitscuda") + " synth --model " + fixture("tiny_dp_multispeaker") +
                      " --text \"hello\" --speaker 3 --out " + tmp + "/b.wav");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("speaker"), std::string::npos) << bad.output;
}

TEST(Synth, EmptyTextAndTextOutsideTheVocabAreRejected) {
  const std::string tmp = vitscuda::testing::temp_dir("synth_text");
  RunResult empty = run(bin("vitscuda") + " synth --model " + fixture("tiny_sdp") + " --text \"   \" --out " + tmp + "/a.wav");
  EXPECT_NE(empty.status, 0);
  EXPECT_NE(empty.output.find("empty"), std::string::npos) << empty.output;
  RunResult none = run(bin("vitscuda") + " synth --model " + fixture("tiny_sdp") + " --text \"@#%&*\" --out " + tmp + "/b.wav");
  EXPECT_NE(none.status, 0);
  EXPECT_NE(none.output.find("vocab"), std::string::npos) << none.output;
  EXPECT_FALSE(fs::exists(tmp + "/a.wav") || fs::exists(tmp + "/b.wav"));
}

// The six checks of `selftest`, each printed as passed, in order, on the tiny model.
TEST(Selftest, EveryCheckPassesOnTheTinyModel) {
  RunResult r = run(bin("vitscuda") + " selftest --model " + fixture("tiny_sdp") +
                    " --seconds 0.5 --steps 5 --seed 1 --device cpu");
  ASSERT_EQ(r.status, 0) << r.output;
  size_t at = 0;
  for (const char* check : {"[PASS] forward gives a waveform", "[PASS] mel computed", "[PASS] loss finite and non-zero",
                            "[PASS] gradients: 110/110 trainable tensors finite and non-zero",
                            "[PASS] optimizer step changed", "[PASS] loss falls over 5 steps", "selftest passed"}) {
    at = r.output.find(check, at);
    ASSERT_NE(at, std::string::npos) << check << " (in this order)\n" << r.output;
  }
  EXPECT_EQ(r.output.find("[FAIL]"), std::string::npos) << r.output;
}

// The vae objective's selftest: its three terms printed, every generator parameter with a gradient.
TEST(Selftest, TheVaeObjectivePassesEveryCheckOnTheTinyModel) {
  RunResult r = run(bin("vitscuda") + " selftest --objective vae --model " + fixture("tiny_sdp") +
                    " --seconds 0.5 --steps 5 --seed 1 --segment-frames 8 --device cpu");
  ASSERT_EQ(r.status, 0) << r.output;
  size_t at = 0;
  for (const char* check : {"objective vae: loss = 35 * mel + 1.5 * kl + 1 * dur", "[PASS] forward gives a waveform",
                            "[PASS] mel computed", "[PASS] loss finite and non-zero", "(mel ", ", kl ", ", dur ",
                            "[PASS] gradients:", "[PASS] optimizer step changed", "[PASS] loss falls over 5 steps",
                            "selftest passed"}) {
    at = r.output.find(check, at);
    ASSERT_NE(at, std::string::npos) << check << " (in this order)\n" << r.output;
  }
  EXPECT_EQ(r.output.find("[FAIL]"), std::string::npos) << r.output;
}

TEST(Selftest, NeedsAModelOrAConfig) {
  RunResult r = run(bin("vitscuda") + " selftest --device cpu");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("selftest needs --model DIR or --config config.json"), std::string::npos) << r.output;
}

TEST(Info, PrintsParameterCounts) {
  RunResult r = run(bin("vitscuda") + " info " + fixture("tiny_sdp"));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* module : {"text_encoder", "flow", "decoder", "duration_predictor", "posterior_encoder", "total"})
    EXPECT_NE(r.output.find(module), std::string::npos) << module << "\n" << r.output;
}
