// Checkpoint directory protocol: round trip, corruption and truncation detection, crash leftovers,
// pruning, and write failures (file-size limit) that must leave earlier checkpoints intact.
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/error.h"
#include "engine/optimizer.h"
#include "io/checkpoint.h"
#include "io/crc32.h"
#include "io/safetensors.h"
#include "support/test_support.h"

namespace vitscuda::io {
namespace {
namespace fs = std::filesystem;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<float> ramp(int64_t n, float scale, float offset) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = offset + scale * static_cast<float>((i * 7919) % 101) / 101.0f;
  return v;
}

std::vector<uint8_t> float_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TrainerState sample_state(int64_t step) {
  TrainerState s;
  s.step = step;
  s.epoch = 3;
  s.position_in_epoch = 2;
  s.rng_seed = std::numeric_limits<uint64_t>::max();  // must survive JSON as an unsigned 64-bit integer
  s.rng_offset = 123456789012345ULL;
  s.learning_rate = 1.2345678901234567e-4;             // needs all 17 significant digits
  s.loss_scale = 65536.0;
  s.data_order = {4, 0, 3, 1, 2};
  s.best_eval_loss = 0.1 + 0.2;                        // not exactly representable in few digits
  s.elapsed_seconds = 3601.25;
  s.config = {{"batch_size", 16}, {"model", {{"hidden", 192}, {"name", "tiny"}}}, {"seed", 1234}};
  return s;
}

constexpr int64_t kMoments = 37;

// A full checkpoint as the trainer writes it: parameters, optimizer moments, trainer state.
CheckpointInfo write_sample_checkpoint(const std::string& dir, int64_t step, float salt = 0.0f) {
  CheckpointWriter writer(dir, step);
  write_safetensors(writer.path_for(kModelFileName),
                    {{"decoder.conv_pre.weight", "F32", {3, 4}, float_bytes(ramp(12, 1.0f, salt))},
                     {"text_encoder.embed_tokens.weight", "F32", {5, 2}, float_bytes(ramp(10, -2.0f, salt))}},
                    {{"format", "pt"}});
  AdamW optimizer(kMoments);
  optimizer.load_state(Tensor::from_vector(ramp(kMoments, 0.5f, salt), {kMoments}),
                       Tensor::from_vector(ramp(kMoments, 1e-3f, 1e-6f), {kMoments}), step);
  write_optimizer_state(writer.path_for(kOptimizerFileName), optimizer);
  writer.write_json(kTrainerStateFileName, trainer_state_to_json(sample_state(step)));
  return writer.commit();
}

std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

using vitscuda::testing::error_of;

TEST(Checkpoint, RoundTripRestoresEveryPart) {
  const std::string dir = testing::temp_dir("ckpt_round_trip");
  const CheckpointInfo written = write_sample_checkpoint(dir, 100);
  EXPECT_EQ(written.path, checkpoint_path(dir, 100));
  // Only the committed directory remains: the temporary one was renamed.
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-100"});
  EXPECT_EQ(entries_of(written.path), (std::vector<std::string>{"MANIFEST.json", "model.safetensors",
                                                                "optimizer.safetensors", "trainer_state.json"}));

  const CheckpointInfo info = verify_checkpoint(written.path);
  EXPECT_EQ(info.step, 100);
  ASSERT_EQ(info.files.size(), 3u);
  EXPECT_TRUE(info.unlisted_files.empty());
  for (const CheckpointFile& f : info.files) {
    const std::vector<uint8_t> bytes = read_bytes(info.path_of(f.name));
    EXPECT_EQ(f.size, bytes.size()) << f.name;
    EXPECT_EQ(f.crc32, crc32(bytes.data(), bytes.size())) << f.name;
  }

  // Parameters: bit-exact.
  const SafetensorsFile model = SafetensorsFile::open(info.path_of(kModelFileName));
  EXPECT_EQ(model.load_f32("decoder.conv_pre.weight").to_float_vector(), ramp(12, 1.0f, 0.0f));

  // Optimizer: moments and step restored exactly into a fresh optimizer.
  AdamW restored(kMoments);
  load_optimizer_state(info.path_of(kOptimizerFileName), restored);
  EXPECT_EQ(restored.step_count(), 100);
  EXPECT_EQ(restored.exp_avg().to_float_vector(), ramp(kMoments, 0.5f, 0.0f));
  EXPECT_EQ(restored.exp_avg_sq().to_float_vector(), ramp(kMoments, 1e-3f, 1e-6f));
  const OptimizerState raw = read_optimizer_state(info.path_of(kOptimizerFileName));
  EXPECT_EQ(raw.exp_avg.dtype(), DType::F32);
  EXPECT_EQ(raw.exp_avg.shape(), Shape{kMoments});

  // Trainer state: every field, doubles to the last bit.
  const TrainerState expected = sample_state(100);
  const TrainerState s = read_trainer_state(info.path_of(kTrainerStateFileName));
  EXPECT_EQ(s.step, expected.step);
  EXPECT_EQ(s.epoch, expected.epoch);
  EXPECT_EQ(s.position_in_epoch, expected.position_in_epoch);
  EXPECT_EQ(s.rng_seed, expected.rng_seed);
  EXPECT_EQ(s.rng_offset, expected.rng_offset);
  EXPECT_EQ(s.learning_rate, expected.learning_rate);
  EXPECT_EQ(s.loss_scale, expected.loss_scale);
  EXPECT_EQ(s.data_order, expected.data_order);
  ASSERT_TRUE(s.best_eval_loss.has_value());
  EXPECT_EQ(*s.best_eval_loss, *expected.best_eval_loss);
  EXPECT_EQ(s.elapsed_seconds, expected.elapsed_seconds);
  EXPECT_EQ(s.config, expected.config);
}

TEST(Checkpoint, OptimizerStateInDoublePrecisionRoundTripsExactly) {
  const std::string dir = testing::temp_dir("ckpt_optimizer_f64");
  AdamW optimizer(5, {}, {}, DType::F64);
  Tensor m = Tensor::from_vector(std::vector<double>{0.1, -0.2, 0.3, 1e-300, 5.0}, {5});
  Tensor v = Tensor::from_vector(std::vector<double>{1.0 / 3, 2.0 / 3, 1e-20, 7.0, 0.0}, {5});
  optimizer.load_state(m, v, 9);
  write_optimizer_state(dir + "/opt.safetensors", optimizer);
  AdamW restored(5, {}, {}, DType::F64);
  load_optimizer_state(dir + "/opt.safetensors", restored);
  EXPECT_EQ(restored.step_count(), 9);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(restored.exp_avg().data<double>()[i], m.data<double>()[i]);
    EXPECT_EQ(restored.exp_avg_sq().data<double>()[i], v.data<double>()[i]);
  }
}

TEST(Checkpoint, PackedOptimizerMomentsLoadAtTheAlignedOffsets) {
  // Moments written with the parameters back to back (3 + 5 + 2 elements) load into an optimizer over
  // the aligned flat buffer (offsets 0, 4, 12; 14 elements), the gaps zero.
  const std::string dir = testing::temp_dir("ckpt_optimizer_packed");
  ParameterStore store;
  store.declare("flow.a.weight", {3});
  store.declare("flow.b.weight", {5});
  store.declare("flow.c.bias", {2});
  store.finalize();
  ASSERT_EQ(store.count(), 10);
  ASSERT_EQ(store.flat_numel(), 14);
  std::vector<float> m(10), v(10);
  for (int i = 0; i < 10; ++i) {
    m[i] = 0.5f + static_cast<float>(i);
    v[i] = 1e-3f * static_cast<float>(i + 1);
  }
  write_optimizer_state(dir + "/opt.safetensors",
                        OptimizerState{Tensor::from_vector(m, {10}), Tensor::from_vector(v, {10}), 7});
  AdamW restored(store.flat_numel());
  load_optimizer_state(dir + "/opt.safetensors", restored, &store);
  EXPECT_EQ(restored.step_count(), 7);
  const std::vector<float> am = restored.exp_avg().to_float_vector(), av = restored.exp_avg_sq().to_float_vector();
  const std::vector<int> aligned_of_packed = {0, 1, 2, 4, 5, 6, 7, 8, 12, 13};
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(am[aligned_of_packed[i]], m[i]) << "exp_avg element " << i;
    EXPECT_EQ(av[aligned_of_packed[i]], v[i]) << "exp_avg_sq element " << i;
  }
  for (int gap : {3, 9, 10, 11}) EXPECT_EQ(am[gap], 0.0f) << "gap " << gap;
  // Without the layout, the count mismatch is an error, as before.
  AdamW unaware(store.flat_numel());
  EXPECT_THROW(load_optimizer_state(dir + "/opt.safetensors", unaware), Error);
}

TEST(Checkpoint, OptimizerStateOfAnotherSizeIsRejected) {
  const std::string dir = testing::temp_dir("ckpt_optimizer_size");
  write_sample_checkpoint(dir, 1);
  AdamW other(kMoments + 1);
  const std::string message = error_of([&] { load_optimizer_state(checkpoint_path(dir, 1) + "/optimizer.safetensors", other); });
  EXPECT_NE(message.find(std::to_string(kMoments)), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(kMoments + 1)), std::string::npos) << message;
}

TEST(Checkpoint, FlippedByteInAnyFileFailsVerificationNamingTheFile) {
  const std::string dir = testing::temp_dir("ckpt_flip");
  const CheckpointInfo info = write_sample_checkpoint(dir, 5);
  ::testing::Test::RecordProperty("cases", static_cast<int>(3 * info.files.size()));  // for scripts/reliability.sh
  for (const CheckpointFile& f : info.files) {
    const std::string path = info.path_of(f.name);
    const std::vector<uint8_t> original = read_bytes(path);
    for (size_t at : {size_t{0}, original.size() / 2, original.size() - 1}) {
      std::vector<uint8_t> corrupt = original;
      corrupt[at] ^= 0x10;
      write_bytes(path, corrupt);
      const std::string message = error_of([&] { verify_checkpoint(info.path); });
      EXPECT_NE(message.find("'" + f.name + "'"), std::string::npos) << f.name << " byte " << at << ": " << message;
      EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
    }
    write_bytes(path, original);
  }
  EXPECT_NO_THROW(verify_checkpoint(info.path));
}

TEST(Checkpoint, AnySingleBitFlipInTheManifestIsDetected) {
  const std::string dir = testing::temp_dir("ckpt_manifest_flip");
  const CheckpointInfo info = write_sample_checkpoint(dir, 5);
  const std::string path = info.path_of(kCheckpointManifestName);
  const std::vector<uint8_t> original = read_bytes(path);
  int undetected = 0;
  for (size_t at = 0; at < original.size(); ++at) {
    std::vector<uint8_t> corrupt = original;
    corrupt[at] ^= 0x01;
    write_bytes(path, corrupt);
    if (error_of([&] { verify_checkpoint(info.path); }).empty()) {
      ++undetected;
      ADD_FAILURE() << "flipping bit 0 of manifest byte " << at << " ('" << static_cast<char>(original[at]) << "') went unnoticed";
    }
  }
  EXPECT_EQ(undetected, 0);
  ::testing::Test::RecordProperty("cases", static_cast<int>(original.size()));  // for scripts/reliability.sh
  write_bytes(path, original);
  EXPECT_NO_THROW(verify_checkpoint(info.path));
}

TEST(Checkpoint, ManifestWithoutSelfChecksumOnlyInVersionOne) {
  const std::string dir = testing::temp_dir("ckpt_manifest_versions");
  const CheckpointInfo info = write_sample_checkpoint(dir, 5);
  const std::string path = info.path_of(kCheckpointManifestName);
  std::ifstream in(path);
  nlohmann::json manifest = nlohmann::json::parse(in);
  ASSERT_EQ(manifest["version"], 2);
  manifest.erase("manifest_crc32");
  std::ofstream(path, std::ios::trunc) << manifest.dump(2);
  EXPECT_NE(error_of([&] { verify_checkpoint(info.path); }).find("manifest_crc32"), std::string::npos);

  // Manifests written before the self-check (version 1) are still read; their files are still verified.
  manifest["version"] = 1;
  std::ofstream(path, std::ios::trunc) << manifest.dump(2);
  EXPECT_EQ(verify_checkpoint(info.path).files.size(), 3u);
  fs::resize_file(info.path_of(kModelFileName), 10);
  EXPECT_NE(error_of([&] { verify_checkpoint(info.path); }).find("'model.safetensors'"), std::string::npos);
}

TEST(Checkpoint, TruncatedExtendedOrMissingFilesAreNamed) {
  const std::string dir = testing::temp_dir("ckpt_truncate");
  const CheckpointInfo info = write_sample_checkpoint(dir, 7);
  const std::string model = info.path_of(kModelFileName);
  const std::vector<uint8_t> original = read_bytes(model);

  fs::resize_file(model, original.size() - 1);
  std::string message = error_of([&] { verify_checkpoint(info.path); });
  EXPECT_NE(message.find("'model.safetensors'"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;

  std::vector<uint8_t> longer = original;
  longer.push_back(0);
  write_bytes(model, longer);
  message = error_of([&] { verify_checkpoint(info.path); });
  EXPECT_NE(message.find("'model.safetensors' has " + std::to_string(longer.size()) + " bytes"), std::string::npos) << message;

  write_bytes(model, original);
  fs::remove(info.path_of(kOptimizerFileName));
  message = error_of([&] { verify_checkpoint(info.path); });
  EXPECT_NE(message.find("'optimizer.safetensors' is missing"), std::string::npos) << message;
}

TEST(Checkpoint, RenamedDirectoryDisagreeingWithItsManifestIsRejected) {
  const std::string dir = testing::temp_dir("ckpt_renamed");
  write_sample_checkpoint(dir, 100);
  fs::rename(checkpoint_path(dir, 100), checkpoint_path(dir, 150));
  const std::string message = error_of([&] { verify_checkpoint(checkpoint_path(dir, 150)); });
  EXPECT_NE(message.find("step 150"), std::string::npos) << message;
  EXPECT_NE(message.find("step 100"), std::string::npos) << message;
}

TEST(Checkpoint, LatestValidSkipsAndReportsIncompleteCorruptAndTemporaryDirectories) {
  const std::string dir = testing::temp_dir("ckpt_latest");
  EXPECT_FALSE(latest_valid_checkpoint(dir + "/does-not-exist", nullptr).latest.has_value());
  write_sample_checkpoint(dir, 100);
  write_sample_checkpoint(dir, 200);
  // step-300: files written but the process died before commit and someone renamed it by hand,
  // so there is no MANIFEST.json.
  fs::create_directories(checkpoint_path(dir, 300));
  write_bytes(checkpoint_path(dir, 300) + "/model.safetensors", {1, 2, 3});
  // step-250: corrupt.
  const CheckpointInfo corrupt = write_sample_checkpoint(dir, 250);
  fs::resize_file(corrupt.path_of(kTrainerStateFileName), 10);
  // A leftover temporary directory and unrelated entries.
  fs::create_directories(dir + "/step-400.tmp-999999999");
  fs::create_directories(dir + "/notes");
  write_bytes(dir + "/step-x", {0});

  std::ostringstream report;
  const CheckpointScan scan = latest_valid_checkpoint(dir, &report);
  ASSERT_TRUE(scan.latest.has_value());
  EXPECT_EQ(scan.latest->step, 200);
  ASSERT_EQ(scan.skipped.size(), 3u) << report.str();
  EXPECT_EQ(scan.skipped[0].path, dir + "/step-400.tmp-999999999");
  EXPECT_EQ(scan.skipped[1].path, checkpoint_path(dir, 300));
  EXPECT_NE(scan.skipped[1].reason.find("MANIFEST.json"), std::string::npos) << scan.skipped[1].reason;
  EXPECT_EQ(scan.skipped[2].path, checkpoint_path(dir, 250));
  EXPECT_NE(scan.skipped[2].reason.find("'trainer_state.json'"), std::string::npos) << scan.skipped[2].reason;
  // Every skipped directory is reported, one line each.
  const std::string report_text = report.str();
  for (const SkippedCheckpoint& s : scan.skipped) EXPECT_NE(report_text.find(s.path), std::string::npos) << report_text;
  EXPECT_EQ(std::count(report_text.begin(), report_text.end(), '\n'), 3);
}

TEST(Checkpoint, NumericStepOrderNotLexicographic) {
  const std::string dir = testing::temp_dir("ckpt_numeric_order");
  write_sample_checkpoint(dir, 9);
  write_sample_checkpoint(dir, 10);
  EXPECT_EQ(latest_valid_checkpoint(dir, nullptr).latest->step, 10);
}

TEST(Checkpoint, UncommittedWriterLeavesNothingAndCrashLeftoversAreCleaned) {
  const std::string dir = testing::temp_dir("ckpt_leftovers");
  write_sample_checkpoint(dir, 1);
  {
    CheckpointWriter abandoned(dir, 2);
    abandoned.write_file("model.safetensors", std::string("partial"));
    EXPECT_TRUE(fs::exists(abandoned.temp_dir()));
  }
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-1"});

  // A real crash: a child process writes part of a checkpoint and dies without committing.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      CheckpointWriter writer(dir, 2);
      writer.write_file("model.safetensors", std::string("partial"));
      ::_exit(0);  // no destructor, no commit: what a crash leaves behind
    } catch (...) {
      ::_exit(1);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string leftover = checkpoint_path(dir, 2) + ".tmp-" + std::to_string(child);
  ASSERT_TRUE(fs::exists(leftover));
  // A temporary directory of a process that is still running (this one) must be kept.
  const std::string live = checkpoint_path(dir, 3) + ".tmp-" + std::to_string(::getpid());
  fs::create_directories(live);

  const CheckpointScan scan = latest_valid_checkpoint(dir, nullptr);
  EXPECT_EQ(scan.latest->step, 1);
  EXPECT_EQ(scan.skipped.size(), 2u);

  std::ostringstream report;
  const std::vector<std::string> removed = remove_stale_temporary_checkpoints(dir, &report);
  EXPECT_EQ(removed, std::vector<std::string>{leftover});
  EXPECT_FALSE(fs::exists(leftover));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_NE(report.str().find("keeping '" + live + "'"), std::string::npos) << report.str();
  fs::remove_all(live);
  EXPECT_NO_THROW(verify_checkpoint(checkpoint_path(dir, 1)));
}

TEST(Checkpoint, PruneKeepsTheNewestValidOnes) {
  const std::string dir = testing::temp_dir("ckpt_prune");
  for (int64_t step : {10, 20, 30, 40, 50}) write_sample_checkpoint(dir, step);
  EXPECT_THROW(prune_checkpoints(dir, 0, nullptr), Error);

  std::vector<std::string> removed = prune_checkpoints(dir, 2, nullptr);
  EXPECT_EQ(removed.size(), 3u);
  EXPECT_EQ(entries_of(dir), (std::vector<std::string>{"step-40", "step-50"}));

  // The newest is corrupt: it is kept for inspection and does not count; both older valid ones stay.
  fs::resize_file(checkpoint_path(dir, 50) + "/model.safetensors", 3);
  std::ostringstream report;
  removed = prune_checkpoints(dir, 1, &report);
  EXPECT_TRUE(removed.empty());
  EXPECT_EQ(entries_of(dir), (std::vector<std::string>{"step-40", "step-50"}));
  EXPECT_NE(report.str().find("keeping invalid"), std::string::npos) << report.str();

  // A newer valid checkpoint makes both the corrupt one and the older valid one removable.
  write_sample_checkpoint(dir, 60);
  removed = prune_checkpoints(dir, 1, nullptr);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-60"});
  EXPECT_NO_THROW(verify_checkpoint(checkpoint_path(dir, 60)));
}

TEST(Checkpoint, SavingTheSameStepAgainReplacesIt) {
  const std::string dir = testing::temp_dir("ckpt_replace");
  write_sample_checkpoint(dir, 100, 0.0f);
  write_sample_checkpoint(dir, 100, 5.0f);
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-100"});
  const CheckpointInfo info = verify_checkpoint(checkpoint_path(dir, 100));
  const SafetensorsFile model = SafetensorsFile::open(info.path_of(kModelFileName));
  EXPECT_EQ(model.load_f32("decoder.conv_pre.weight").to_float_vector(), ramp(12, 1.0f, 5.0f));
}

TEST(Checkpoint, CommitRejectsMissingAndUnregisteredFilesAndCleansUp) {
  const std::string dir = testing::temp_dir("ckpt_commit_errors");
  write_sample_checkpoint(dir, 1);
  {
    CheckpointWriter writer(dir, 2);
    writer.add_file("never_written.bin");
    const std::string message = error_of([&] { writer.commit(); });
    EXPECT_NE(message.find("never_written.bin"), std::string::npos) << message;
    EXPECT_FALSE(fs::exists(writer.temp_dir()));
  }
  {
    CheckpointWriter writer(dir, 2);
    writer.write_file("a.txt", std::string("a"));
    write_bytes(writer.temp_dir() + "/stray.txt", {1});
    const std::string message = error_of([&] { writer.commit(); });
    EXPECT_NE(message.find("stray.txt"), std::string::npos) << message;
    EXPECT_FALSE(fs::exists(writer.temp_dir()));
  }
  {
    CheckpointWriter writer(dir, 2);
    EXPECT_THROW(writer.path_for("../escape"), Error);
    EXPECT_THROW(writer.path_for(kCheckpointManifestName), Error);
  }
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-1"});
}

// Runs `body` in a child process whose files may not grow past `limit_bytes` (write() then fails
// with EFBIG because SIGXFSZ is ignored). The child exits 0 when `body` returns true.
int run_with_file_size_limit(rlim_t limit_bytes, const std::function<bool()>& body) {
  const pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{limit_bytes, limit_bytes};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(90);
    bool ok = false;
    try {
      ok = body();
    } catch (...) {
      ::_exit(91);
    }
    ::_exit(ok ? 0 : 92);
  }
  int status = 0;
  if (::waitpid(child, &status, 0) != child) return -2;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(Checkpoint, DiskFullDuringWriteFileThrowsRemovesTempAndKeepsPreviousCheckpoint) {
  const std::string dir = testing::temp_dir("ckpt_disk_full");
  write_sample_checkpoint(dir, 100);
  const std::string message_file = testing::temp_dir("ckpt_disk_full_message") + "/message.txt";
  const int code = run_with_file_size_limit(64 * 1024, [&] {
    CheckpointWriter writer(dir, 200);
    const std::string temp = writer.temp_dir();
    const std::vector<uint8_t> big(1 << 20, 0xAB);
    try {
      writer.write_file(kModelFileName, big.data(), big.size());
    } catch (const Error& e) {
      std::ofstream(message_file) << e.what();
      const std::string m = e.what();
      // The message names the file and carries the errno text; the temporary directory is gone.
      return m.find(temp + "/model.safetensors") != std::string::npos && m.find(std::strerror(EFBIG)) != std::string::npos &&
             !fs::exists(temp);
    }
    return false;
  });
  std::ifstream in(message_file);
  std::stringstream message;
  message << in.rdbuf();
  EXPECT_EQ(code, 0) << "error message: " << message.str();
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-100"});
  EXPECT_EQ(latest_valid_checkpoint(dir, nullptr).latest->step, 100);
}

TEST(Checkpoint, DiskFullInTheCallersWriterLeavesNoTemporaryDirectory) {
  const std::string dir = testing::temp_dir("ckpt_disk_full_safetensors");
  write_sample_checkpoint(dir, 100);
  const int code = run_with_file_size_limit(64 * 1024, [&] {
    try {
      CheckpointWriter writer(dir, 200);
      write_safetensors(writer.path_for(kModelFileName), {{"w", "F32", {1 << 16}, std::vector<uint8_t>(1 << 18, 0)}}, {});
      writer.commit();
    } catch (const Error&) {
      return true;  // the writer's destructor has removed its temporary directory
    }
    return false;
  });
  EXPECT_EQ(code, 0);
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-100"});
  EXPECT_NO_THROW(verify_checkpoint(checkpoint_path(dir, 100)));
}

// Runs `body` in a child process as the user nobody (uid and gid 65534, no supplementary groups),
// for root, whom permission bits do not stop. The string it returns comes back through a pipe.
// Returns the child's exit status: 0 when `body` ran; 94 when `reachable` is not reachable as
// nobody; other values when dropping privileges failed.
int run_as_nobody(const std::string& reachable, const std::function<std::string()>& body, std::string* result) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  const pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    ::close(fds[0]);
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(93);
    if (::access(reachable.c_str(), X_OK) != 0) ::_exit(94);
    std::string out;
    try {
      out = body();
    } catch (...) {
      ::_exit(91);
    }
    const ssize_t written = ::write(fds[1], out.data(), out.size());
    ::_exit(written == static_cast<ssize_t>(out.size()) ? 0 : 92);
  }
  ::close(fds[1]);
  char buffer[4096];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) result->append(buffer, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  if (::waitpid(child, &status, 0) != child) return -2;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(Checkpoint, ReadOnlyCheckpointsDirectoryIsAClearError) {
  const std::string dir = testing::temp_dir("ckpt_read_only");
  write_sample_checkpoint(dir, 100);
  ::chmod(dir.c_str(), 0555);
  const auto try_to_write = [&] { return error_of([&] { write_sample_checkpoint(dir, 200); }); };
  std::string message;
  if (::geteuid() == 0) {
    const int code = run_as_nobody(dir, try_to_write, &message);
    if (code == 94) {
      ::chmod(dir.c_str(), 0755);
      GTEST_SKIP() << "running as root, and " << dir << " cannot be reached as the user nobody to try the write";
    }
    ASSERT_EQ(code, 0) << "the write as the user nobody did not run (child exit status " << code << ")";
  } else {
    message = try_to_write();
  }
  ::chmod(dir.c_str(), 0755);
  EXPECT_NE(message.find(dir), std::string::npos) << message;
  EXPECT_NE(message.find(std::strerror(EACCES)), std::string::npos) << message;
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-100"});
}

TEST(TrainerStateJson, StrictParsingNamesTheField) {
  const nlohmann::json good = trainer_state_to_json(sample_state(3));
  EXPECT_NO_THROW(trainer_state_from_json(good, "state"));

  nlohmann::json missing = good;
  missing.erase("loss_scale");
  EXPECT_NE(error_of([&] { trainer_state_from_json(missing, "state"); }).find("'loss_scale'"), std::string::npos);

  nlohmann::json wrong_type = good;
  wrong_type["epoch"] = "3";
  EXPECT_NE(error_of([&] { trainer_state_from_json(wrong_type, "state"); }).find("'epoch'"), std::string::npos);

  nlohmann::json not_permutation = good;
  not_permutation["data_order"] = {0, 1, 1, 3, 4};
  EXPECT_NE(error_of([&] { trainer_state_from_json(not_permutation, "state"); }).find("appears twice"), std::string::npos);

  nlohmann::json out_of_range = good;
  out_of_range["data_order"] = {0, 1, 5};
  EXPECT_NE(error_of([&] { trainer_state_from_json(out_of_range, "state"); }).find("data_order[2]"), std::string::npos);

  nlohmann::json past_end = good;
  past_end["position_in_epoch"] = 6;
  EXPECT_NE(error_of([&] { trainer_state_from_json(past_end, "state"); }).find("position_in_epoch"), std::string::npos);

  nlohmann::json no_eval = good;
  no_eval["best_eval_loss"] = nullptr;
  EXPECT_FALSE(trainer_state_from_json(no_eval, "state").best_eval_loss.has_value());

  TrainerState nan_lr = sample_state(3);
  nan_lr.learning_rate = std::nan("");
  EXPECT_THROW(trainer_state_to_json(nan_lr), Error);
}

}  // namespace
}  // namespace vitscuda::io
