// `vitscuda verify`: prepared caches and checkpoints checked against their own checksums, with the
// damaged file and item named and a non-zero exit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "train_corpus.h"

using namespace vitscuda::testing;
namespace fs = std::filesystem;

namespace {

CommandResult verify(const std::string& args) { return run_command(binary_path("vitscuda") + " verify " + args); }

void flip_byte(const std::string& path, std::streamoff from_end) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-from_end, std::ios::end);
  const char c = static_cast<char>(f.get());
  f.seekp(-from_end, std::ios::end);
  f.put(static_cast<char>(c ^ 0x20));
}

}  // namespace

TEST(Verify, PreparedDataAndItsDamage) {
  const std::string tmp = temp_dir("verify_data");
  const std::string data = prepared_corpus(tmp);
  auto ok = verify(data);
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_NE(ok.output.find("ok: " + data + "/train.vcds: dataset cache, "), std::string::npos) << ok.output;
  EXPECT_NE(ok.output.find("ok: " + data + "/eval.vcds: dataset cache, "), std::string::npos) << ok.output;
  // The last bytes of the file are the index; the sample data of the last item lies before it.
  const uint64_t size = fs::file_size(data + "/train.vcds");
  std::ifstream in(data + "/train.vcds", std::ios::binary);
  in.seekg(16);
  uint64_t count = 0;
  in.read(reinterpret_cast<char*>(&count), 8);
  ASSERT_GT(size, 32 * count + 64);
  flip_byte(data + "/train.vcds", static_cast<std::streamoff>(32 * count + 16));
  auto bad = verify(data + "/train.vcds " + data + "/eval.vcds");
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("FAILED: dataset cache " + data + "/train.vcds: item " + std::to_string(count - 1) +
                            " (id \"utt"),
            std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("ok: " + data + "/eval.vcds"), std::string::npos) << "the other file is still checked";
  EXPECT_NE(bad.output.find("error: 1 of 2 path(s) failed verification"), std::string::npos) << bad.output;
}

TEST(Verify, CheckpointsOfARunAndTheOneResumeLoads) {
  const std::string tmp = temp_dir("verify_checkpoints");
  const std::string data = prepared_corpus(tmp);
  auto train = run_command(binary_path("vitscuda") + " train --data " + data + " --model " +
                           tiny_model_with_small_discriminator(tmp + "/model") + " --out " + tmp +
                           "/run --batch-size 4 --segment-frames 8 --max-steps 2 --checkpoint-every 1");
  ASSERT_EQ(train.status, 0) << train.output;
  const std::string ck = tmp + "/run/checkpoints";
  auto ok = verify(tmp + "/run");
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_NE(ok.output.find("ok: " + ck + "/step-2: checkpoint step 2, epoch 0, 8 samples into it"), std::string::npos)
      << ok.output;
  EXPECT_NE(ok.output.find("ok: " + ck + "/step-1: checkpoint step 1"), std::string::npos) << ok.output;
  EXPECT_NE(ok.output.find("newest valid: " + ck + "/step-2 "), std::string::npos) << ok.output;

  // A damaged newest checkpoint: named with its file, and resume would fall back to step-1.
  flip_byte(ck + "/step-2/optimizer.safetensors", 5);
  fs::create_directories(ck + "/step-3.tmp-999999");
  auto bad = verify(tmp + "/run");
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("FAILED: checkpoint '" + ck + "/step-2': file 'optimizer.safetensors' is corrupt"),
            std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("leftover: " + ck + "/step-3.tmp-999999"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("newest valid: " + ck + "/step-1 "), std::string::npos) << bad.output;
  auto one = verify(ck + "/step-1");
  EXPECT_EQ(one.status, 0) << one.output;

  auto nothing = verify(tmp + "/absent " + tiny_model() + "/config.json");
  EXPECT_EQ(nothing.status, 1) << nothing.output;
  EXPECT_NE(nothing.output.find("FAILED: " + tmp + "/absent: no such file or directory"), std::string::npos)
      << nothing.output;
  EXPECT_NE(nothing.output.find("config.json: not a .vcds cache"), std::string::npos) << nothing.output;
}
