// Faults injected into a running `vitscuda train`: the disk filling up while a checkpoint is
// written (a file-size limit everywhere; a real full tmpfs where a private mount namespace is
// available), and the prepared cache going bad under a running job.
//
// Training reads DATA/train.vcds lazily: the index is checked when the run starts and each item is
// read and CRC-checked when a batch needs it, every epoch. So "an input that becomes unreadable
// mid-training" is, for training, the cache changing under the job: an item's bytes overwritten in
// place (a CRC mismatch), or the file cut short (reads past its new end). Both must be named and
// counted under the failure policy, stop the run when systematic, and never crash it. Unreadable
// audio is a `prepare`-time fault; tests/cli/test_prepare.cpp covers it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iterator>
#include <regex>
#include <thread>

#include "io/checkpoint.h"
#include "train_corpus.h"

using namespace vitscuda;
using namespace vitscuda::testing;
namespace fs = std::filesystem;

namespace {

// vitscuda on one thread: these tests are about files, and one thread keeps a tiny model quick on a
// machine whose cores are busy with other tests.
std::string vitscuda_program() { return "env OMP_NUM_THREADS=1 " + binary_path("vitscuda"); }

// Two epochs over the training items (3 updates each), a checkpoint after every update.
// The model: the tiny one with a small discriminator, beside DATA (the default objective, full, trains it too).
std::string model_beside(const std::string& data) {
  return tiny_model_with_small_discriminator(fs::path(data).parent_path().string() + "/model");
}

std::string train_command(const std::string& data, const std::string& out, const std::string& extra = "") {
  return vitscuda_program() + " train --data " + data + " --model " + model_beside(data) + " --out " + out +
         " --epochs 2 --batch-size 4 --segment-frames 8 --lr 3e-3 --seed 5 --checkpoint-every 1 --log-every 100" +
         extra;
}

struct Exit {
  bool exited = false;  // false: killed by a signal (`signal`), or not finished in time
  int status = -1;
  int signal = 0;
  std::string output;
  std::string describe() const {
    return exited ? "exit status " + std::to_string(status)
                  : (signal ? "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")"
                            : "did not finish");
  }
};

Exit wait_for_exit(pid_t pid, const std::string& log, double timeout_seconds) {
  Exit e;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  int status = 0;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  } else if (WIFEXITED(status)) {
    e.exited = true;
    e.status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    e.signal = WTERMSIG(status);
  }
  e.output = slurp(log);
  return e;
}

// Starts `command` under /bin/sh with its output in `log`; `limit_bytes` > 0 caps the size of every
// file it writes (RLIMIT_FSIZE, with SIGXFSZ ignored so that write() fails with EFBIG, as on a
// full disk, instead of killing the process).
pid_t start(const std::string& command, const std::string& log, rlim_t limit_bytes = 0) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) ::_exit(120);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (limit_bytes > 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      const rlimit limit{limit_bytes, limit_bytes};
      if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(121);
    }
    // exec: the pid is the program itself, so signals sent to it reach it and not a shell.
    const std::string exec_command = "exec " + command;
    ::execl("/bin/sh", "sh", "-c", exec_command.c_str(), static_cast<char*>(nullptr));
    ::_exit(122);
  }
  return pid;
}

Exit run(const std::string& command, const std::string& log, rlim_t limit_bytes = 0, double timeout_seconds = 900) {
  return wait_for_exit(start(command, log, limit_bytes), log, timeout_seconds);
}

bool wait_until(const std::function<bool()>& condition, double timeout_seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The last update of a run: the uninterrupted reference every faulted run must reproduce once it
// is resumed without the fault.
struct Reference {
  std::string model_bytes;
  std::vector<std::pair<int64_t, double>> losses;
};

Reference reference_run(const std::string& data, const std::string& out) {
  const Exit e = run(train_command(data, out), out + ".log");
  EXPECT_TRUE(e.exited && e.status == 0) << e.describe() << "\n" << e.output;
  return {slurp(out + "/final_model/model.safetensors"), step_losses(out + "/metrics.jsonl")};
}

// Resumes `out` without any fault and checks it ends exactly where the reference did.
void expect_resume_matches(const std::string& data, const std::string& out, int64_t from_step, const Reference& ref) {
  const Exit e = run(train_command(data, out, " --resume"), out + ".resume.log");
  ASSERT_TRUE(e.exited && e.status == 0) << e.describe() << "\n" << e.output;
  EXPECT_NE(e.output.find("resumed from " + io::checkpoint_path(out + "/checkpoints", from_step) + ": step " +
                          std::to_string(from_step)),
            std::string::npos)
      << e.output;
  EXPECT_TRUE(slurp(out + "/final_model/model.safetensors") == ref.model_bytes)
      << "the run resumed after the fault must end with the uninterrupted run's parameters";
  EXPECT_EQ(step_losses(out + "/metrics.jsonl"), ref.losses)
      << "metrics.jsonl must hold each step once, with the uninterrupted run's losses";
}

// A run directory holding the checkpoint of step 2 (and its metrics), made without faults.
void run_two_steps(const std::string& data, const std::string& out) {
  const Exit e = run(train_command(data, out, " --max-steps 2"), out + ".first.log");
  ASSERT_TRUE(e.exited && e.status == 0) << e.describe() << "\n" << e.output;
  ASSERT_EQ(io::latest_valid_checkpoint(out + "/checkpoints", nullptr).latest->step, 2);
}

// The byte sizes of the two big files of a checkpoint.
std::pair<uint64_t, uint64_t> checkpoint_sizes(const std::string& checkpoint) {
  return {fs::file_size(checkpoint + "/" + io::kModelFileName), fs::file_size(checkpoint + "/" + io::kOptimizerFileName)};
}

// Offset and size of item `i` of a .vcds cache, from the index at the end of the file (layout in
// io/dataset.h).
std::pair<uint64_t, uint64_t> item_place(const std::string& bytes, size_t i) {
  uint64_t index_offset = 0, offset = 0, size = 0;
  std::memcpy(&index_offset, bytes.data() + 24, 8);
  std::memcpy(&offset, bytes.data() + index_offset + 32 * i, 8);
  std::memcpy(&size, bytes.data() + index_offset + 32 * i + 8, 8);
  return {offset, size};
}

uint64_t item_count(const std::string& bytes) {
  uint64_t count = 0;
  std::memcpy(&count, bytes.data() + 16, 8);
  return count;
}

// Flips the last byte of item `i` in place (the same inode: what a running reader sees).
void corrupt_item_in_place(const std::string& path, size_t i) {
  const auto [offset, size] = item_place(slurp(path), i);
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  unsigned char byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(offset + size - 1)), 1);
  byte ^= 0x5A;
  ASSERT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(offset + size - 1)), 1);
  ::close(fd);
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST(TrainFaults, FileSizeLimitDuringACheckpointStopsTheRunAndKeepsThePreviousOne) {
  const std::string tmp = temp_dir("train_fault_fsize");
  const std::string data = prepared_corpus(tmp);
  const Reference ref = reference_run(data, tmp + "/reference");
  const auto [model_size, optimizer_size] =
      checkpoint_sizes(io::latest_valid_checkpoint(tmp + "/reference/checkpoints", nullptr).latest->path);
  ASSERT_GT(optimizer_size, model_size + 4096);
  // Each limit lets the metrics log and the event file grow but stops one checkpoint file.
  struct Case {
    rlim_t limit;
    const char* failing_file;
  };
  const Case cases[] = {{model_size / 2, io::kModelFileName}, {model_size + 1024, io::kOptimizerFileName}};
  ::testing::Test::RecordProperty("cases", static_cast<int>(std::size(cases)));  // for scripts/reliability.sh
  for (const Case c : cases) {
    SCOPED_TRACE(c.failing_file);
    const std::string out = tmp + "/run_" + c.failing_file;
    run_two_steps(data, out);
    const std::string before = slurp(out + "/checkpoints/step-2/" + io::kModelFileName);

    const Exit e = run(train_command(data, out, " --resume"), out + ".limited.log", c.limit);
    // A clear error that names the file being written and why, and a non-zero exit.
    EXPECT_TRUE(e.exited && e.status == 1) << e.describe() << "\n" << e.output;
    const std::regex named("error: .*step-3\\.tmp-[0-9]+/" + std::regex_replace(c.failing_file, std::regex("\\."), "\\.") +
                           ".*" + std::strerror(EFBIG));
    EXPECT_TRUE(std::regex_search(e.output, named)) << e.output;
    EXPECT_NE(e.output.find("cannot save the checkpoint of step 3 in " + out + "/checkpoints: "), std::string::npos)
        << e.output;
    EXPECT_NE(e.output.find("the newest valid checkpoint is " + out + "/checkpoints/step-2"), std::string::npos)
        << e.output;
    EXPECT_EQ(e.output.find("checkpoint (periodic)"), std::string::npos) << "no checkpoint may be reported written";
    // Nothing half-written is left, and the previous checkpoint is untouched and still the newest.
    EXPECT_EQ(entries_of(out + "/checkpoints"), (std::vector<std::string>{"step-1", "step-2"}));
    EXPECT_NO_THROW(io::verify_checkpoint(out + "/checkpoints/step-2"));
    EXPECT_TRUE(slurp(out + "/checkpoints/step-2/" + io::kModelFileName) == before);
    // It loads, and training continues from it to exactly where the uninterrupted run ended.
    expect_resume_matches(data, out, 2, ref);
  }
}

TEST(TrainFaults, FullFileSystemDuringACheckpointStopsTheRunAndKeepsThePreviousOne) {
  // A real ENOSPC: a small tmpfs in a private mount namespace (it vanishes with the namespace).
  if (run("unshare -m sh -c 'mount -t tmpfs -o size=64k tmpfs /mnt'", temp_dir("train_fault_probe") + "/log").status !=
      0)
    GTEST_SKIP() << "cannot mount a tmpfs in a private mount namespace here (needs root and CAP_SYS_ADMIN); the "
                    "file-size-limit test covers the same path with EFBIG";
  const std::string tmp = temp_dir("train_fault_enospc");
  const std::string data = prepared_corpus(tmp);
  const Reference ref = reference_run(data, tmp + "/reference");
  const auto [model_size, optimizer_size] =
      checkpoint_sizes(io::latest_valid_checkpoint(tmp + "/reference/checkpoints", nullptr).latest->path);
  // Room for one checkpoint (keep 1) and half of the next; the run's logs fit in the slack.
  const uint64_t disk = model_size + optimizer_size + (model_size + optimizer_size) / 2;
  fs::create_directories(tmp + "/disk");
  const std::string out = tmp + "/disk/run";
  const std::string script = "mount -t tmpfs -o size=" + std::to_string(disk) + " tmpfs " + tmp + "/disk && " +
                             train_command(data, out, " --keep-checkpoints 1") +
                             "; status=$?; cp -a " + out + " " + tmp + "/copy; exit $status";
  const Exit e = run("unshare -m sh -c '" + script + "'", tmp + "/enospc.log");
  EXPECT_TRUE(e.exited && e.status == 1) << e.describe() << "\n" << e.output;
  const std::regex named(std::string("error: .*step-2\\.tmp-[0-9]+/.*") + std::strerror(ENOSPC));
  EXPECT_TRUE(std::regex_search(e.output, named)) << e.output;
  // The copy taken inside the namespace: only the complete step-1, which resumes exactly.
  const std::string copy = tmp + "/copy";
  ASSERT_TRUE(fs::is_directory(copy + "/checkpoints")) << e.output;
  EXPECT_EQ(entries_of(copy + "/checkpoints"), std::vector<std::string>{"step-1"});
  EXPECT_NO_THROW(io::verify_checkpoint(copy + "/checkpoints/step-1"));
  expect_resume_matches(data, copy, 1, ref);
}

TEST(TrainFaults, CacheItemsCorruptedDuringTrainingAreNamedCountedAndStopTheRun) {
  const std::string tmp = temp_dir("train_fault_corrupt_all");
  const std::string data = prepared_corpus(tmp);
  const std::string cache = data + "/train.vcds";
  const std::string log = tmp + "/train.log";
  const pid_t pid = start(vitscuda_program() + " train --data " + data + " --model " + model_beside(data) + " --out " +
                              tmp + "/run --epochs 1000 --batch-size 2 --segment-frames 8 --checkpoint-every 0",
                          log);
  ASSERT_TRUE(wait_until([&] { return fs::exists(tmp + "/run/metrics.jsonl") && fs::file_size(tmp + "/run/metrics.jsonl") > 0; }, 600))
      << slurp(log);
  const uint64_t items = item_count(slurp(cache));
  for (size_t i = 0; i < items; ++i) corrupt_item_in_place(cache, i);
  const Exit e = wait_for_exit(pid, log, 600);
  // Systematic: the run stops on its own, with a non-zero exit, and says why.
  EXPECT_TRUE(e.exited && e.status == 1) << e.describe() << "\n" << e.output;
  EXPECT_NE(e.output.find("more than --max-error-rate"), std::string::npos) << e.output;
  // Each failure names the sample, the file, the item and its id, and what was wrong.
  const std::regex named("sample #([0-9]+) failed: unreadable cache item: dataset cache " + cache +
                         ": item \\1 \\(id \"utt[0-9]+\"\\) is corrupt: CRC32");
  EXPECT_TRUE(std::regex_search(e.output, named)) << e.output;
  EXPECT_NE(e.output.find("unreadable cache item: "), std::string::npos) << e.output;
  EXPECT_FALSE(fs::exists(tmp + "/run/final_model")) << "a stopped run must not produce a final model";
}

TEST(TrainFaults, OneCacheItemCorruptedDuringTrainingIsNamedCountedAndTrainingGoesOn) {
  const std::string tmp = temp_dir("train_fault_corrupt_one");
  const std::string data = prepared_corpus(tmp);
  const std::string cache = data + "/train.vcds";
  const std::string log = tmp + "/train.log";
  const pid_t pid = start(vitscuda_program() + " train --data " + data + " --model " + model_beside(data) + " --out " +
                              tmp + "/run --epochs 1000 --batch-size 2 --segment-frames 8 --checkpoint-every 0 " +
                              "--max-error-rate 0.5 --log-every 1",
                          log);
  ASSERT_TRUE(wait_until([&] { return fs::exists(tmp + "/run/metrics.jsonl") && fs::file_size(tmp + "/run/metrics.jsonl") > 0; }, 600))
      << slurp(log);
  const size_t updates_before = step_losses(tmp + "/run/metrics.jsonl").size();
  corrupt_item_in_place(cache, 3);
  // An epoch that met the damaged item counts it in its summary.
  const std::string summary =
      "1 of " + std::to_string(item_count(slurp(cache))) + " samples failed; unreadable cache item: 1";
  const bool counted = wait_until([&] { return count_of(slurp(log), summary) >= 1; }, 600);
  ::kill(pid, SIGTERM);
  const Exit e = wait_for_exit(pid, log, 600);
  ASSERT_TRUE(counted) << e.output;
  EXPECT_TRUE(e.exited && e.status == 130) << e.describe() << "\n" << e.output;
  // Named each time it is met, with the item and its id; the other items kept training.
  const std::regex named("sample #3 failed: unreadable cache item: dataset cache " + cache +
                         ": item 3 \\(id \"utt[0-9]+\"\\) is corrupt");
  EXPECT_TRUE(std::regex_search(e.output, named)) << e.output;
  EXPECT_EQ(count_of(e.output, "failed: "), count_of(e.output, "sample #3 failed: ")) << "only item 3 may fail\n"
                                                                                     << e.output;
  EXPECT_GT(step_losses(tmp + "/run/metrics.jsonl").size(), updates_before) << "training goes on with the others";
}

TEST(TrainFaults, CacheTruncatedDuringTrainingIsAnErrorNotACrash) {
  const std::string tmp = temp_dir("train_fault_truncated");
  const std::string data = prepared_corpus(tmp);
  const std::string cache = data + "/train.vcds";
  const std::string log = tmp + "/train.log";
  const pid_t pid = start(vitscuda_program() + " train --data " + data + " --model " + model_beside(data) + " --out " +
                              tmp + "/run --epochs 1000 --batch-size 2 --segment-frames 8 --checkpoint-every 0",
                          log);
  ASSERT_TRUE(wait_until([&] { return fs::exists(tmp + "/run/metrics.jsonl") && fs::file_size(tmp + "/run/metrics.jsonl") > 0; }, 600))
      << slurp(log);
  // Cut the file in place to its header: every item now lies past its end.
  ASSERT_EQ(::truncate(cache.c_str(), 64), 0) << std::strerror(errno);
  const Exit e = wait_for_exit(pid, log, 600);
  EXPECT_TRUE(e.exited && e.status == 1) << e.describe() << "\n" << e.output;
  EXPECT_NE(e.output.find("more than --max-error-rate"), std::string::npos) << e.output;
  const std::regex named("sample #([0-9]+) failed: unreadable cache item: dataset cache " + cache +
                         ": item \\1: .*shorter than when it was opened");
  EXPECT_TRUE(std::regex_search(e.output, named)) << e.output;
}
