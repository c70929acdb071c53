// Inputs found by the fuzz targets (tests/fuzz), each with the outcome the reader owes it. The
// inputs are committed under tests/data/io/fuzz/, minimised.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "io/audio.h"
#include "io/checkpoint.h"
#include "io/hf_config.h"
#include "io/manifest.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::data_path;
using vitscuda::testing::temp_dir;

namespace {

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Far deeper than the stack allows nlohmann's recursive copy, dump and comparison to go.
std::string deep_array(size_t depth = 200000) { return std::string(depth, '[') + std::string(depth, ']'); }

// The message of the vitscuda::Error that `f` throws; fails the test when it throws nothing.
template <typename F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no vitscuda::Error thrown";
  return "";
}

}  // namespace

// fuzz_audio: an MPC 2000 file with one sample at 65535 Hz. Resampling it to 16 kHz leaves
// round(0.24) = 0 samples, and libsoxr crashed on the empty (null) output buffer.
TEST(FuzzRegression, ResamplingToNoSampleIsEmptyNotACrash) {
  const io::Audio audio = io::read_audio(data_path("io/fuzz/audio_one_sample_65535hz.mpc2k"));
  ASSERT_EQ(audio.sample_rate, 65535);
  ASSERT_EQ(audio.samples.size(), 1u);
  EXPECT_TRUE(io::resample(audio.samples, audio.sample_rate, 16000).empty());
  EXPECT_TRUE(io::resample({0.5f}, 44100, 16000).empty());
  // One more input sample gives one output sample: the guard does not swallow real output.
  EXPECT_EQ(io::resample({0.5f, 0.5f}, 44100, 16000).size(), 1u);
}

// Found by the sanitizer build (make_corpus): the optimizer state of a model with no trainable
// element passed data() of empty vectors, which may be null, to memcpy (undefined behaviour).
TEST(FuzzRegression, EmptyOptimizerStateRoundTrips) {
  const std::string dir = temp_dir("fuzz_empty_optimizer_state");
  for (DType dtype : {DType::F32, DType::F64}) {
    io::OptimizerState s;
    s.exp_avg = Tensor::zeros({0}, dtype);
    s.exp_avg_sq = Tensor::zeros({0}, dtype);
    s.step = 3;
    const std::string path = dir + "/optimizer.safetensors";
    io::write_optimizer_state(path, s);
    const io::OptimizerState back = io::read_optimizer_state(path);
    EXPECT_EQ(back.exp_avg.numel(), 0);
    EXPECT_EQ(back.exp_avg_sq.numel(), 0);
    EXPECT_EQ(back.exp_avg.dtype(), dtype);
    EXPECT_EQ(back.step, 3);
  }
}

// The input is a 300-character LJSpeech id: checking AUDIO/wavs/<id>.wav made std::filesystem
// throw filesystem_error (File name too long) out of the parser, ending prepare over one row.
TEST(FuzzRegression, LJSpeechIdLongerThanNameMaxIsARejectedRow) {
  const std::string audio = temp_dir("fuzz_ljspeech_long_id");
  std::filesystem::create_directories(audio + "/wavs");
  write_text(audio + "/wavs/ok.wav", "RIFF");
  const std::string bad = file_text(data_path("io/fuzz/ljspeech_id_longer_than_name_max.csv"));
  const std::string message = error_of([&] { io::parse_manifest(bad, "metadata.csv", audio); });
  EXPECT_NE(message.find("bad_path"), std::string::npos) << message;
  EXPECT_NE(message.find("File name too long"), std::string::npos) << message;

  const io::Manifest m = io::parse_manifest("ok|Fine.|Fine.\n" + bad, "metadata.csv", audio);
  ASSERT_EQ(m.entries.size(), 1u);
  EXPECT_EQ(m.entries[0].audio_path, audio + "/wavs/ok.wav");
  ASSERT_EQ(m.rejected.size(), 1u);
  EXPECT_EQ(m.rejected[0].line, 2);
  EXPECT_EQ(m.rejected[0].reason, "bad_path");
  EXPECT_EQ(m.rejected[0].id, std::string(300, 'a'));
}

// A FLAC file whose STREAMINFO claims 2^36 - 1 samples (it holds 300): read_audio reserved
// memory for the claim, 256 GB, and failed with std::bad_alloc.
TEST(FuzzRegression, AudioHeaderClaimingHugeLengthReadsWhatIsThere) {
  const io::Audio audio = io::read_audio(data_path("io/fuzz/audio_flac_claims_2e36_frames.flac"));
  EXPECT_EQ(audio.sample_rate, 44100);
  EXPECT_EQ(audio.samples.size(), 300u);
}

// Deeply nested JSON: every reader parsed it (nlohmann's parser is iterative) and then
// overflowed the stack copying it, dumping it into an error message or checksumming it.
TEST(FuzzRegression, DeeplyNestedJsonIsAnErrorInEveryReader) {
  const std::string dir = temp_dir("fuzz_deep_json");
  const std::string deep = deep_array();
  auto expect_depth_error = [](const std::string& message, const std::string& names) {
    EXPECT_NE(message.find("deeper than 64 levels"), std::string::npos) << message;
    EXPECT_NE(message.find(names), std::string::npos) << message;
  };

  write_text(dir + "/config.json", "{\"model_type\": " + deep + "}");
  expect_depth_error(error_of([&] { io::VitsConfig::from_file(dir + "/config.json"); }), dir + "/config.json");

  std::filesystem::create_directories(dir + "/model");
  write_text(dir + "/model/vocab.json", "{\"a\": " + deep + "}");
  expect_depth_error(error_of([&] { io::Tokenizer::from_dir(dir + "/model"); }), "vocab.json");
  write_text(dir + "/model/vocab.json", "{\"a\": 0}");
  write_text(dir + "/model/tokenizer_config.json", "{\"pad_token\": {\"content\": \"a\", \"x\": " + deep + "}}");
  expect_depth_error(error_of([&] { io::Tokenizer::from_dir(dir + "/model"); }), "tokenizer_config.json");

  const std::string header = "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": " + deep + "}}";
  std::vector<uint8_t> st(8 + header.size());
  for (int i = 0; i < 8; ++i) st[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  std::copy(header.begin(), header.end(), st.begin() + 8);
  expect_depth_error(error_of([&] { io::SafetensorsFile::from_bytes(st, "deep.safetensors"); }), "deep.safetensors");

  // JSONL: the line is a rejected row, the manifest as a whole still parses.
  const io::Manifest m = io::parse_manifest("{\"audio\": \"a.wav\", \"text\": \"x\"}\n"
                                            "{\"audio\": \"b.wav\", \"text\": \"y\", \"speaker\": " + deep + "}\n",
                                            "train.jsonl", dir);
  ASSERT_EQ(m.entries.size(), 1u);
  ASSERT_EQ(m.rejected.size(), 1u);
  EXPECT_EQ(m.rejected[0].reason, "bad_json");
  expect_depth_error(m.rejected[0].detail, "train.jsonl line 2");

  write_text(dir + "/trainer_state.json", "{\"format\": \"vitscuda-trainer-state\", \"config\": " + deep + "}");
  expect_depth_error(error_of([&] { io::read_trainer_state(dir + "/trainer_state.json"); }), "trainer_state.json");

  const std::string checkpoint = dir + "/step-1";
  std::filesystem::create_directories(checkpoint);
  write_text(checkpoint + "/MANIFEST.json", "{\"format\": \"vitscuda-checkpoint\", \"version\": 2, "
                                            "\"manifest_crc32\": \"00000000\", \"extra\": " + deep + "}");
  expect_depth_error(error_of([&] { io::verify_checkpoint(checkpoint); }), "MANIFEST.json");
}

// The limit leaves room for every real file: 64 levels parse.
TEST(FuzzRegression, JsonNestedSixtyFourLevelsStillParses) {
  const std::string dir = temp_dir("fuzz_json_64_levels");
  write_text(dir + "/config.json", "{\"model_type\": \"vits\", \"extra\": " + deep_array(63) + "}");
  EXPECT_NO_THROW(io::VitsConfig::from_file(dir + "/config.json"));
  write_text(dir + "/config.json", "{\"model_type\": \"vits\", \"extra\": " + deep_array(64) + "}");
  EXPECT_THROW(io::VitsConfig::from_file(dir + "/config.json"), Error);
}
