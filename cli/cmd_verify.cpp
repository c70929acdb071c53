// `vitscuda verify PATH...`: checks checkpoints and prepared caches against their own checksums,
// in a process of its own, so that what a run would load can be confirmed independently of it.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/error.h"
#include "io/checkpoint.h"
#include "io/dataset.h"

namespace fs = std::filesystem;

namespace vitscuda::cli {

namespace {

bool has_step_directories(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().filename().string().rfind("step-", 0) == 0) return true;
  return false;
}

// Each verify_* prints one "ok:" or "FAILED:" line per item and returns false on any failure.
bool verify_cache(const std::string& path) {
  try {
    const io::DatasetReader r = io::DatasetReader::open(path, io::DatasetVerify::All);
    std::printf("ok: %s: dataset cache, %zu items, %.1f s of audio at %d Hz, every CRC32 matches\n", path.c_str(),
                r.size(), r.total_seconds(), r.sample_rate());
    return true;
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return false;
  }
}

bool verify_one_checkpoint(const std::string& path) {
  try {
    const io::CheckpointInfo info = io::verify_checkpoint(path);
    std::string state;
    if (info.has_file(io::kTrainerStateFileName)) {
      const io::TrainerState s = io::read_trainer_state(info.path_of(io::kTrainerStateFileName));
      VC_CHECK(s.step == info.step, "checkpoint '" << path << "': trainer state is at step " << s.step
                                                   << " but the manifest says step " << info.step);
      state = ", epoch " + std::to_string(s.epoch) + ", " + std::to_string(s.position_in_epoch) + " samples into it";
    }
    std::printf("ok: %s: checkpoint step %lld%s, %zu files match MANIFEST.json\n", path.c_str(),
                static_cast<long long>(info.step), state.c_str(), info.files.size());
    return true;
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return false;
  }
}

// A run's checkpoints directory: every step-N checkpoint, newest first, and which one --resume
// would load. Temporary directories of interrupted writes are listed; they are not checkpoints
// (the next run removes them), so they do not fail the verification.
bool verify_checkpoints_dir(const std::string& path) {
  std::vector<std::pair<int64_t, std::string>> steps;
  std::vector<std::string> leftovers;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) != 0) continue;
    const std::string digits = name.substr(5);
    if (!digits.empty() && digits.size() <= 18 && digits.find_first_not_of("0123456789") == std::string::npos)
      steps.emplace_back(std::stoll(digits), entry.path().string());
    else if (name.find(".tmp-") != std::string::npos)
      leftovers.push_back(entry.path().string());
  }
  VC_CHECK(!ec, "cannot list " << path << ": " << ec.message());
  std::sort(steps.rbegin(), steps.rend());
  std::sort(leftovers.begin(), leftovers.end());
  for (const std::string& l : leftovers)
    std::printf("leftover: %s: unfinished temporary directory of an interrupted write (not loaded; removed by the "
                "next run)\n", l.c_str());
  bool all_ok = true;
  std::string newest;
  for (const auto& [step, dir] : steps) {
    const bool ok = verify_one_checkpoint(dir);
    all_ok = all_ok && ok;
    if (ok && newest.empty()) newest = dir;
  }
  if (newest.empty()) {
    std::printf("FAILED: %s: no valid checkpoint\n", path.c_str());
    return false;
  }
  std::printf("newest valid: %s (what --resume loads)\n", newest.c_str());
  return all_ok;
}

bool verify_path(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_regular_file(p, ec)) {
    if (p.extension() == ".vcds") return verify_cache(path);
    std::printf("FAILED: %s: not a .vcds cache, a checkpoint, a checkpoints directory or a prepared data directory\n",
                path.c_str());
    return false;
  }
  if (!fs::is_directory(p, ec)) {
    std::printf("FAILED: %s: no such file or directory\n", path.c_str());
    return false;
  }
  if (fs::exists(p / io::kCheckpointManifestName) || p.filename().string().rfind("step-", 0) == 0)
    return verify_one_checkpoint(path);
  if (fs::exists(p / "train.vcds")) {
    bool ok = verify_cache((p / "train.vcds").string());
    if (fs::exists(p / "eval.vcds")) ok = verify_cache((p / "eval.vcds").string()) && ok;
    return ok;
  }
  if (fs::is_directory(p / "checkpoints")) return verify_checkpoints_dir((p / "checkpoints").string());
  if (has_step_directories(p)) return verify_checkpoints_dir(path);
  std::printf("FAILED: %s: not a .vcds cache, a checkpoint, a checkpoints directory or a prepared data directory\n",
              path.c_str());
  return false;
}

}  // namespace

void register_verify(CLI::App& app) {
  auto paths = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand(
      "verify", "Check checkpoints and prepared caches against their checksums (a checkpoint step-N, a run's "
                "checkpoints directory or run directory, a prepared data directory, a .vcds file)");
  cmd->add_option("paths", *paths, "What to verify")->required();
  cmd->callback([paths] {
    size_t failed = 0;
    for (const std::string& p : *paths) failed += verify_path(p) ? 0 : 1;
    std::fflush(stdout);
    VC_CHECK(failed == 0, failed << " of " << paths->size() << " path(s) failed verification (see the FAILED lines)");
  });
}

}  // namespace vitscuda::cli
