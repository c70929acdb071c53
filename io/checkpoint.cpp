#include "io/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "common/error.h"
#include "io/crc32.h"
#include "io/json_input.h"
#include "io/safetensors.h"

namespace vitscuda::io {
namespace fs = std::filesystem;

namespace {

constexpr const char* kManifestFormat = "vitscuda-checkpoint";
constexpr const char* kOptimizerFormat = "vitscuda-adamw";
constexpr const char* kTrainerStateFormat = "vitscuda-trainer-state";
constexpr int kFormatVersion = 1;  // trainer_state.json
// MANIFEST.json: version 2 carries manifest_crc32 and must; version 1 (written before the manifest
// checked itself) is still read, with its listed files verified as usual.
constexpr int kManifestVersion = 2;
constexpr int kManifestVersionWithoutSelfCheck = 1;

// The manifest checks itself too: CRC32 of its compact JSON dump without this field (nlohmann
// objects keep keys sorted, so parse-then-dump reproduces the text the writer checksummed).
constexpr const char* kManifestCrcField = "manifest_crc32";

std::string errno_text(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

std::string hex32(uint32_t value) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%08x", value);
  return buffer;
}

std::string manifest_crc(const nlohmann::json& manifest_without_crc) {
  const std::string text = manifest_without_crc.dump();
  return hex32(crc32(text.data(), text.size()));
}

// A plain file name: no directories, nothing hidden behind "." or "..".
void check_file_name(const std::string& name) {
  VC_CHECK(!name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
               name.find('\0') == std::string::npos,
           "checkpoint file name '" << name << "' must be a plain file name (no '/', not '.' or '..')");
}

// Writes all of `size` bytes to a new file and fsyncs it; returns 0 or the errno of the first failure
// (with `what` naming the failing call).
int write_and_sync(const std::string& path, const void* bytes, size_t size, std::string& what) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    what = "open";
    return errno;
  }
  const auto* p = static_cast<const char*>(bytes);
  size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      what = "write";
      return err;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    what = "fsync";
    return err;
  }
  if (::close(fd) != 0) {
    what = "close";
    return errno;
  }
  return 0;
}

// fsync of a file or directory by path. Some file systems refuse to fsync directories (EINVAL);
// that is not an error for us since there is nothing more we could do there.
int sync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = 0;
  if (::fsync(fd) != 0 && !(directory && errno == EINVAL)) err = errno;
  ::close(fd);
  return err;
}

// "step-123" -> 123; anything else (including "step-123.tmp-9") -> nullopt.
std::optional<int64_t> parse_step_name(const std::string& name) {
  const std::string prefix = "step-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const std::string digits = name.substr(prefix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(digits);
}

bool is_temporary_name(const std::string& name) {
  return name.compare(0, 5, "step-") == 0 && name.find(".tmp-") != std::string::npos;
}

// The writer's pid in "step-N.tmp-<pid>[...]", or -1.
long temporary_owner_pid(const std::string& name) {
  const size_t at = name.find(".tmp-");
  if (at == std::string::npos) return -1;
  size_t i = at + 5;
  long pid = 0;
  size_t digits = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && digits < 10) {
    pid = pid * 10 + (name[i] - '0');
    ++i;
    ++digits;
  }
  return digits > 0 ? pid : -1;
}

struct StepDirectory {
  int64_t step;
  std::string path;
};

struct DirectoryListing {
  std::vector<StepDirectory> checkpoints;  // newest first
  std::vector<std::string> temporaries;
};

DirectoryListing list_checkpoints(const std::string& checkpoints_dir) {
  DirectoryListing listing;
  std::error_code ec;
  if (!fs::exists(checkpoints_dir, ec)) return listing;
  VC_CHECK(fs::is_directory(checkpoints_dir, ec), "checkpoints path '" << checkpoints_dir << "' is not a directory");
  fs::directory_iterator it(checkpoints_dir, ec);
  VC_CHECK(!ec, "cannot list checkpoints directory '" << checkpoints_dir << "': " << ec.message());
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (is_temporary_name(name)) {
      listing.temporaries.push_back(entry.path().string());
    } else if (auto step = parse_step_name(name)) {
      listing.checkpoints.push_back({*step, entry.path().string()});
    }
  }
  std::sort(listing.checkpoints.begin(), listing.checkpoints.end(),
            [](const StepDirectory& a, const StepDirectory& b) { return a.step > b.step; });
  std::sort(listing.temporaries.begin(), listing.temporaries.end());
  return listing;
}

bool process_is_running(long pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) == 0) return true;
  return errno == EPERM;  // exists, owned by someone else
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  VC_CHECK(!ec, "cannot remove '" << path << "': " << ec.message());
}

// For scripts/crash_test.sh: when VITSCUDA_TEST_CRASH_POINT names this point, say so on stderr and
// wait, so that the test's SIGKILL lands exactly here (moments too short to hit by timing alone).
void crash_point(const char* name) {
  static const char* wanted = std::getenv("VITSCUDA_TEST_CRASH_POINT");
  if (!wanted || std::strcmp(wanted, name) != 0) return;
  std::fprintf(stderr, "crash point: %s\n", name);
  std::fflush(stderr);
  ::sleep(30);
}

// Removes an old checkpoint directory, its manifest first: a removal cut short leaves a directory
// that plainly is no checkpoint (no MANIFEST.json) rather than one whose files fail their checks.
void remove_checkpoint_dir(const std::string& path) {
  std::error_code ec;
  fs::remove(fs::path(path) / kCheckpointManifestName, ec);
  VC_CHECK(!ec, "cannot remove '" << path << "/" << kCheckpointManifestName << "': " << ec.message());
  crash_point("checkpoint-prune");
  remove_tree(path);
}

}  // namespace

bool CheckpointInfo::has_file(const std::string& name) const {
  return std::any_of(files.begin(), files.end(), [&](const CheckpointFile& f) { return f.name == name; });
}

std::string checkpoint_path(const std::string& checkpoints_dir, int64_t step) {
  return (fs::path(checkpoints_dir) / ("step-" + std::to_string(step))).string();
}

// ------------------------------------------------------------------ CheckpointWriter

CheckpointWriter::CheckpointWriter(const std::string& checkpoints_dir, int64_t step)
    : checkpoints_dir_(checkpoints_dir), step_(step) {
  VC_CHECK(step >= 0, "checkpoint step must be >= 0, got " << step);
  std::error_code ec;
  fs::create_directories(checkpoints_dir, ec);
  VC_CHECK(!ec, "cannot create checkpoints directory '" << checkpoints_dir << "': " << ec.message());
  final_dir_ = checkpoint_path(checkpoints_dir, step);
  temp_dir_ = final_dir_ + ".tmp-" + std::to_string(::getpid());
  // Left over by an earlier writer of this process for the same step that could not clean up.
  fs::remove_all(temp_dir_, ec);
  if (::mkdir(temp_dir_.c_str(), 0755) != 0)
    VC_FAIL("cannot create temporary checkpoint directory '" << temp_dir_ << "': " << errno_text(errno));
}

CheckpointWriter::~CheckpointWriter() {
  if (!finished_) {
    std::error_code ec;
    fs::remove_all(temp_dir_, ec);  // nothing to report from a destructor; the leftover would be skipped by readers
  }
}

void CheckpointWriter::abort() {
  if (finished_) return;
  finished_ = true;
  std::error_code ec;
  fs::remove_all(temp_dir_, ec);
  VC_CHECK(!ec, "cannot remove temporary checkpoint directory '" << temp_dir_ << "': " << ec.message());
}

void CheckpointWriter::fail_and_clean(const std::string& message) {
  std::string cleanup;
  if (!finished_) {
    finished_ = true;
    std::error_code ec;
    fs::remove_all(temp_dir_, ec);
    if (ec) cleanup = " (and removing '" + temp_dir_ + "' failed: " + ec.message() + ")";
  }
  throw Error(message + cleanup);
}

std::string CheckpointWriter::path_for(const std::string& name) {
  add_file(name);
  return temp_dir_ + "/" + name;
}

void CheckpointWriter::add_file(const std::string& name) {
  VC_CHECK(!finished_, "checkpoint step-" << step_ << " was already committed or aborted; cannot add '" << name << "'");
  check_file_name(name);
  VC_CHECK(name != kCheckpointManifestName, "'" << name << "' is written by commit(), not by the caller");
  if (std::find(names_.begin(), names_.end(), name) == names_.end()) names_.push_back(name);
}

void CheckpointWriter::write_file(const std::string& name, const void* bytes, size_t size) {
  const std::string path = path_for(name);
  std::string what;
  if (const int err = write_and_sync(path, bytes, size, what))
    fail_and_clean("cannot write checkpoint file '" + path + "' (" + std::to_string(size) + " bytes): " + what +
                   " failed: " + errno_text(err));
}

void CheckpointWriter::write_json(const std::string& name, const nlohmann::json& value) {
  write_file(name, value.dump(2) + "\n");
}

CheckpointInfo CheckpointWriter::commit() {
  VC_CHECK(!finished_, "checkpoint step-" << step_ << " was already committed or aborted");
  CheckpointInfo info;
  info.path = final_dir_;
  info.step = step_;
  try {
    // Every file in the directory must be one the caller registered, so that the manifest
    // describes the directory completely.
    std::set<std::string> registered(names_.begin(), names_.end());
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(temp_dir_, ec)) {
      const std::string name = entry.path().filename().string();
      if (!registered.count(name))
        fail_and_clean("checkpoint '" + temp_dir_ + "' contains '" + name +
                       "', which was not registered with path_for()/add_file(); refusing to commit");
    }
    if (ec) fail_and_clean("cannot list '" + temp_dir_ + "': " + ec.message());

    nlohmann::json files = nlohmann::json::array();
    for (const std::string& name : names_) {
      const std::string path = temp_dir_ + "/" + name;
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0)
        fail_and_clean("checkpoint file '" + path + "' was registered but cannot be found: " + errno_text(errno));
      if (!S_ISREG(st.st_mode)) fail_and_clean("checkpoint file '" + path + "' is not a regular file");
      if (const int err = sync_path(path, false)) fail_and_clean("cannot fsync '" + path + "': " + errno_text(err));
      CheckpointFile file;
      file.name = name;
      file.crc32 = crc32_file(path, &file.size);
      if (file.size != static_cast<uint64_t>(st.st_size))
        fail_and_clean("checkpoint file '" + path + "' changed size while being checksummed");
      files.push_back({{"name", name}, {"size", file.size}, {"crc32", hex32(file.crc32)}});
      info.files.push_back(file);
    }
    nlohmann::json manifest = {
        {"format", kManifestFormat},
        {"version", kManifestVersion},
        {"step", step_},
        {"checksum", "CRC32 (IEEE 802.3), hex; detects accidental corruption, not tampering"},
        {"files", files},
    };
    manifest[kManifestCrcField] = manifest_crc(manifest);
    const std::string manifest_path = temp_dir_ + "/" + kCheckpointManifestName;
    const std::string text = manifest.dump(2) + "\n";
    std::string what;
    if (const int err = write_and_sync(manifest_path, text.data(), text.size(), what))
      fail_and_clean("cannot write '" + manifest_path + "': " + what + " failed: " + errno_text(err));
    if (const int err = sync_path(temp_dir_, true))
      fail_and_clean("cannot fsync directory '" + temp_dir_ + "': " + errno_text(err));

    crash_point("checkpoint-before-rename");
    struct stat existing {};
    if (::lstat(final_dir_.c_str(), &existing) != 0) {
      if (::rename(temp_dir_.c_str(), final_dir_.c_str()) != 0)
        fail_and_clean("cannot rename '" + temp_dir_ + "' to '" + final_dir_ + "': " + errno_text(errno));
    } else {
      // A checkpoint of this step exists (a resumed run saving the same step again): swap the two
      // directories in one step, then remove the old one, now under the temporary name.
      if (::renameat2(AT_FDCWD, temp_dir_.c_str(), AT_FDCWD, final_dir_.c_str(), RENAME_EXCHANGE) != 0) {
        if (errno != EINVAL && errno != ENOSYS)
          fail_and_clean("cannot exchange '" + temp_dir_ + "' with '" + final_dir_ + "': " + errno_text(errno));
        // No atomic exchange on this file system: move the old one aside first. A crash between the
        // two renames leaves no step-N, and readers fall back to the previous checkpoint.
        const std::string aside = temp_dir_ + ".replaced";
        fs::remove_all(aside, ec);
        if (::rename(final_dir_.c_str(), aside.c_str()) != 0)
          fail_and_clean("cannot move the existing '" + final_dir_ + "' aside: " + errno_text(errno));
        if (::rename(temp_dir_.c_str(), final_dir_.c_str()) != 0)
          fail_and_clean("cannot rename '" + temp_dir_ + "' to '" + final_dir_ + "': " + errno_text(errno) +
                         " (the previous checkpoint of this step is at '" + aside + "')");
        fs::remove_all(aside, ec);
      } else {
        fs::remove_all(temp_dir_, ec);
      }
    }
    finished_ = true;
  } catch (const Error& e) {
    if (!finished_) fail_and_clean(e.what());  // e.g. a read error while checksumming
    throw;
  } catch (const std::exception& e) {
    fail_and_clean(std::string("committing checkpoint '") + final_dir_ + "' failed: " + e.what());
  }
  if (const int err = sync_path(checkpoints_dir_, true))
    VC_FAIL("checkpoint '" << final_dir_ << "' is in place but fsync of '" << checkpoints_dir_
                           << "' failed, so the rename may not survive a power loss: " << errno_text(err));
  return info;
}

// ------------------------------------------------------------------ verification

CheckpointInfo verify_checkpoint(const std::string& checkpoint_dir) {
  std::error_code ec;
  VC_CHECK(fs::is_directory(checkpoint_dir, ec), "checkpoint '" << checkpoint_dir << "' is not a directory");
  const std::string manifest_path = checkpoint_dir + "/" + kCheckpointManifestName;
  VC_CHECK(fs::exists(manifest_path, ec), "checkpoint '" << checkpoint_dir << "' has no " << kCheckpointManifestName
                                                         << " (incomplete: its writer stopped before commit)");
  nlohmann::json manifest;
  {
    std::ifstream in(manifest_path, std::ios::binary);
    VC_CHECK(in, "cannot open '" << manifest_path << "': " << std::strerror(errno));
    std::stringstream text;
    text << in.rdbuf();
    try {
      manifest = parse_json_input<nlohmann::json>(manifest_path, text.str());
    } catch (const std::exception& e) {
      VC_FAIL("'" << manifest_path << "' is not valid JSON: " << e.what());
    }
  }
  VC_CHECK(manifest.is_object() && manifest.contains("format") && manifest["format"] == kManifestFormat,
           "'" << manifest_path << "' is not a " << kManifestFormat << " manifest");
  VC_CHECK(manifest.contains("version") && manifest["version"].is_number_integer(),
           "'" << manifest_path << "': missing integer field 'version'");
  const int64_t version = manifest["version"].get<int64_t>();
  VC_CHECK(version == kManifestVersion || version == kManifestVersionWithoutSelfCheck,
           "'" << manifest_path << "': unsupported version " << version << " (expected " << kManifestVersion << ")");
  if (version == kManifestVersion) {
    VC_CHECK(manifest.contains(kManifestCrcField) && manifest[kManifestCrcField].is_string(),
             "'" << manifest_path << "' has no " << kManifestCrcField);
    const std::string listed_crc = manifest[kManifestCrcField].get<std::string>();
    manifest.erase(kManifestCrcField);
    const std::string computed_crc = manifest_crc(manifest);
    VC_CHECK(computed_crc == listed_crc, "'" << manifest_path << "' is corrupt: its content has CRC32 " << computed_crc
                                             << ", its " << kManifestCrcField << " says " << listed_crc);
  }
  VC_CHECK(manifest.contains("step") && manifest["step"].is_number_integer(),
           "'" << manifest_path << "': missing integer field 'step'");
  VC_CHECK(manifest.contains("files") && manifest["files"].is_array(),
           "'" << manifest_path << "': missing array field 'files'");

  CheckpointInfo info;
  info.path = checkpoint_dir;
  info.step = manifest["step"].get<int64_t>();
  const std::string dir_name = fs::path(checkpoint_dir).lexically_normal().filename().string();
  if (auto named_step = parse_step_name(dir_name))
    VC_CHECK(*named_step == info.step, "checkpoint '" << checkpoint_dir << "' is named for step " << *named_step
                                                      << " but its manifest says step " << info.step);

  std::set<std::string> listed;
  for (const auto& entry : manifest["files"]) {
    VC_CHECK(entry.is_object() && entry.contains("name") && entry["name"].is_string() && entry.contains("size") &&
                 entry["size"].is_number_unsigned() && entry.contains("crc32") && entry["crc32"].is_string(),
             "'" << manifest_path << "': malformed file entry " << entry.dump());
    CheckpointFile file;
    file.name = entry["name"].get<std::string>();
    check_file_name(file.name);
    VC_CHECK(listed.insert(file.name).second, "'" << manifest_path << "' lists '" << file.name << "' twice");
    file.size = entry["size"].get<uint64_t>();
    const std::string crc_text = entry["crc32"].get<std::string>();
    VC_CHECK(crc_text.size() == 8 && crc_text.find_first_not_of("0123456789abcdef") == std::string::npos,
             "'" << manifest_path << "': crc32 of '" << file.name << "' is '" << crc_text << "', expected 8 hex digits");
    file.crc32 = static_cast<uint32_t>(std::stoul(crc_text, nullptr, 16));
    info.files.push_back(file);
  }

  for (const CheckpointFile& file : info.files) {
    const std::string path = checkpoint_dir + "/" + file.name;
    struct stat st {};
    VC_CHECK(::stat(path.c_str(), &st) == 0,
             "checkpoint '" << checkpoint_dir << "': file '" << file.name << "' is missing: " << errno_text(errno));
    VC_CHECK(S_ISREG(st.st_mode), "checkpoint '" << checkpoint_dir << "': '" << file.name << "' is not a regular file");
    VC_CHECK(static_cast<uint64_t>(st.st_size) == file.size,
             "checkpoint '" << checkpoint_dir << "': file '" << file.name << "' has " << st.st_size
                            << " bytes, the manifest lists " << file.size << (static_cast<uint64_t>(st.st_size) < file.size ? " (truncated)" : ""));
    uint64_t read_size = 0;
    const uint32_t crc = crc32_file(path, &read_size);
    VC_CHECK(read_size == file.size, "checkpoint '" << checkpoint_dir << "': file '" << file.name << "' read "
                                                    << read_size << " bytes, the manifest lists " << file.size);
    VC_CHECK(crc == file.crc32, "checkpoint '" << checkpoint_dir << "': file '" << file.name << "' is corrupt: CRC32 "
                                               << hex32(crc) << ", the manifest lists " << hex32(file.crc32));
  }
  for (const auto& entry : fs::directory_iterator(checkpoint_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name != kCheckpointManifestName && !listed.count(name)) info.unlisted_files.push_back(name);
  }
  std::sort(info.unlisted_files.begin(), info.unlisted_files.end());
  return info;
}

CheckpointScan latest_valid_checkpoint(const std::string& checkpoints_dir, std::ostream* report) {
  CheckpointScan scan;
  const DirectoryListing listing = list_checkpoints(checkpoints_dir);
  auto skip = [&](const std::string& path, const std::string& reason) {
    scan.skipped.push_back({path, reason});
    if (report) *report << "checkpoint scan: skipping '" << path << "': " << reason << "\n";
  };
  for (const std::string& temp : listing.temporaries)
    skip(temp, "unfinished temporary directory (a writer stopped before commit, or is still writing)");
  for (const StepDirectory& candidate : listing.checkpoints) {
    try {
      scan.latest = verify_checkpoint(candidate.path);
      break;
    } catch (const Error& e) {
      skip(candidate.path, e.what());
    }
  }
  return scan;
}

CheckpointScan latest_valid_checkpoint(const std::string& checkpoints_dir) {
  return latest_valid_checkpoint(checkpoints_dir, &std::cerr);
}

std::vector<std::string> remove_stale_temporary_checkpoints(const std::string& checkpoints_dir, std::ostream* report) {
  std::vector<std::string> removed;
  for (const std::string& temp : list_checkpoints(checkpoints_dir).temporaries) {
    const long pid = temporary_owner_pid(fs::path(temp).filename().string());
    if (pid < 0) {
      if (report) *report << "checkpoint cleanup: keeping '" << temp << "': no writer pid in its name\n";
      continue;
    }
    if (pid == static_cast<long>(::getpid()) || process_is_running(pid)) {
      if (report) *report << "checkpoint cleanup: keeping '" << temp << "': its writer (pid " << pid << ") is running\n";
      continue;
    }
    remove_tree(temp);
    removed.push_back(temp);
    if (report) *report << "checkpoint cleanup: removed unfinished '" << temp << "' (writer pid " << pid << " is gone)\n";
  }
  return removed;
}

std::vector<std::string> prune_checkpoints(const std::string& checkpoints_dir, int keep_last_k, std::ostream* report) {
  VC_CHECK(keep_last_k >= 1, "prune_checkpoints: keep_last_k must be >= 1 (the newest valid checkpoint is always kept), got "
                                 << keep_last_k);
  const DirectoryListing listing = list_checkpoints(checkpoints_dir);
  // Newest first: verify until keep_last_k valid ones are found; everything older than the
  // oldest kept one goes, and so do invalid ones older than the newest valid one.
  std::vector<bool> valid(listing.checkpoints.size(), false);
  int kept = 0;
  size_t first_unexamined = listing.checkpoints.size();
  bool seen_valid = false;
  std::vector<std::string> removed;
  auto remove = [&](const std::string& path, const std::string& why) {
    remove_checkpoint_dir(path);
    removed.push_back(path);
    if (report) *report << "checkpoint prune: removed '" << path << "' (" << why << ")\n";
  };
  for (size_t i = 0; i < listing.checkpoints.size(); ++i) {
    const std::string& path = listing.checkpoints[i].path;
    try {
      verify_checkpoint(path);
      valid[i] = true;
      seen_valid = true;
      if (++kept == keep_last_k) {
        first_unexamined = i + 1;
        break;
      }
    } catch (const Error& e) {
      if (seen_valid) {
        remove(path, std::string("invalid and older than a valid checkpoint: ") + e.what());
      } else if (report) {
        *report << "checkpoint prune: keeping invalid '" << path << "' for inspection (newer than every valid one): "
                << e.what() << "\n";
      }
    }
  }
  for (size_t i = first_unexamined; i < listing.checkpoints.size(); ++i)
    remove(listing.checkpoints[i].path, "older than the " + std::to_string(keep_last_k) + " newest valid checkpoints");
  return removed;
}

// ------------------------------------------------------------------ optimizer state

namespace {

std::vector<uint8_t> tensor_bytes(const Tensor& device_or_host, const std::string& what) {
  VC_CHECK(device_or_host.defined(), "optimizer state '" << what << "' is undefined");
  const Tensor t = device_or_host.to(Device::CPU);
  std::vector<uint8_t> bytes(t.nbytes());
  // An empty vector's data() may be null, and memcpy with a null pointer is undefined even for 0 bytes.
  if (!bytes.empty()) std::memcpy(bytes.data(), t.raw(), bytes.size());
  return bytes;
}

const char* safetensors_dtype(DType dtype) { return dtype == DType::F64 ? "F64" : "F32"; }

Tensor read_flat(const SafetensorsFile& file, const std::string& name, int64_t numel) {
  const SafetensorsEntry* entry = file.find(name);
  VC_CHECK(entry, "'" << file.path() << "' has no tensor '" << name << "'");
  VC_CHECK(entry->shape == Shape{numel}, "'" << file.path() << "': tensor '" << name << "' has shape "
                                             << shape_str(entry->shape) << ", expected [" << numel << "]");
  if (entry->dtype == "F64") {
    Tensor t = Tensor::empty({numel}, DType::F64);
    const std::vector<uint8_t> raw = file.raw_bytes(name);
    if (!raw.empty()) std::memcpy(t.raw(), raw.data(), raw.size());  // data() of an empty vector may be null
    return t;
  }
  VC_CHECK(entry->dtype == "F32", "'" << file.path() << "': tensor '" << name << "' has dtype " << entry->dtype
                                      << ", expected F32 or F64");
  return file.load_f32(name);
}

int64_t metadata_int(const SafetensorsFile& file, const std::string& key) {
  const auto it = file.metadata().find(key);
  VC_CHECK(it != file.metadata().end(), "'" << file.path() << "': metadata has no '" << key << "'");
  try {
    size_t used = 0;
    const long long value = std::stoll(it->second, &used);
    if (used == it->second.size() && value >= 0) return value;
  } catch (const std::exception&) {
  }
  VC_FAIL("'" << file.path() << "': metadata '" << key << "' is '" << it->second << "', expected a non-negative integer");
}

}  // namespace

void write_optimizer_state(const std::string& path, const OptimizerState& state) {
  VC_CHECK(state.exp_avg.defined() && state.exp_avg_sq.defined() && state.exp_avg.numel() == state.exp_avg_sq.numel() &&
               state.exp_avg.dtype() == state.exp_avg_sq.dtype(),
           "optimizer state for '" << path << "': exp_avg and exp_avg_sq must have the same element count and dtype");
  VC_CHECK(state.step >= 0, "optimizer state for '" << path << "': negative step " << state.step);
  const int64_t numel = state.exp_avg.numel();
  const std::string dtype = safetensors_dtype(state.exp_avg.dtype());
  write_safetensors(path,
                    {{"exp_avg", dtype, {numel}, tensor_bytes(state.exp_avg, "exp_avg")},
                     {"exp_avg_sq", dtype, {numel}, tensor_bytes(state.exp_avg_sq, "exp_avg_sq")}},
                    {{"format", kOptimizerFormat}, {"step", std::to_string(state.step)}, {"numel", std::to_string(numel)}});
}

void write_optimizer_state(const std::string& path, const AdamW& optimizer) {
  write_optimizer_state(path, OptimizerState{optimizer.exp_avg(), optimizer.exp_avg_sq(), optimizer.step_count()});
}

OptimizerState read_optimizer_state(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const auto format = file.metadata().find("format");
  VC_CHECK(format != file.metadata().end() && format->second == kOptimizerFormat,
           "'" << path << "' is not a " << kOptimizerFormat << " optimizer state (metadata 'format' missing or different)");
  OptimizerState state;
  const int64_t numel = metadata_int(file, "numel");
  state.step = metadata_int(file, "step");
  state.exp_avg = read_flat(file, "exp_avg", numel);
  state.exp_avg_sq = read_flat(file, "exp_avg_sq", numel);
  return state;
}

namespace {

// Packed moments (parameters back to back, in declaration order) at the store's aligned offsets; the
// alignment gaps get zeros, as a fresh optimizer has there.
Tensor aligned_moments(const Tensor& packed, const ParameterStore& layout) {
  Tensor aligned = Tensor::zeros({layout.flat_numel()}, packed.dtype());
  const size_t element = packed.dtype() == DType::F64 ? sizeof(double) : sizeof(float);
  const auto* from = static_cast<const unsigned char*>(packed.raw());
  auto* to = static_cast<unsigned char*>(aligned.raw());
  int64_t packed_offset = 0;
  for (const ParameterInfo& p : layout.params()) {
    const int64_t n = shape_numel(p.shape);
    if (n > 0) std::memcpy(to + element * p.offset, from + element * packed_offset, element * n);
    packed_offset += n;
  }
  return aligned;
}

}  // namespace

void load_optimizer_state(const std::string& path, AdamW& optimizer, const ParameterStore* layout) {
  OptimizerState state = read_optimizer_state(path);
  if (layout && state.exp_avg.numel() != optimizer.numel() && state.exp_avg.numel() == layout->count() &&
      layout->flat_numel() == optimizer.numel()) {
    state.exp_avg = aligned_moments(state.exp_avg, *layout);
    state.exp_avg_sq = aligned_moments(state.exp_avg_sq, *layout);
  }
  VC_CHECK(state.exp_avg.numel() == optimizer.numel(), "'" << path << "' holds optimizer moments for "
                                                           << state.exp_avg.numel() << " elements, the optimizer has "
                                                           << optimizer.numel());
  optimizer.load_state(state.exp_avg, state.exp_avg_sq, state.step);
}

// ------------------------------------------------------------------ trainer state

nlohmann::json trainer_state_to_json(const TrainerState& s) {
  VC_CHECK(std::isfinite(s.learning_rate) && std::isfinite(s.loss_scale) && std::isfinite(s.elapsed_seconds),
           "trainer state has a non-finite value (learning_rate " << s.learning_rate << ", loss_scale " << s.loss_scale
                                                                  << ", elapsed_seconds " << s.elapsed_seconds
                                                                  << "); JSON cannot store it");
  VC_CHECK(!s.best_eval_loss || std::isfinite(*s.best_eval_loss),
           "trainer state: best_eval_loss " << *s.best_eval_loss << " is not finite");
  return {
      {"format", kTrainerStateFormat},
      {"version", kFormatVersion},
      {"step", s.step},
      {"epoch", s.epoch},
      {"position_in_epoch", s.position_in_epoch},
      {"rng", {{"seed", s.rng_seed}, {"offset", s.rng_offset}}},
      {"learning_rate", s.learning_rate},
      {"loss_scale", s.loss_scale},
      {"data_order", s.data_order},
      {"best_eval_loss", s.best_eval_loss ? nlohmann::json(*s.best_eval_loss) : nlohmann::json(nullptr)},
      {"elapsed_seconds", s.elapsed_seconds},
      {"config", s.config},
  };
}

namespace {

const nlohmann::json& field(const nlohmann::json& object, const std::string& name, const std::string& source) {
  VC_CHECK(object.is_object() && object.contains(name), source << ": missing field '" << name << "'");
  return object.at(name);
}

int64_t int_field(const nlohmann::json& object, const std::string& name, const std::string& source) {
  const nlohmann::json& v = field(object, name, source);
  VC_CHECK(v.is_number_integer(), source << ": field '" << name << "' must be an integer, got " << v.dump());
  VC_CHECK(v.get<int64_t>() >= 0, source << ": field '" << name << "' must be >= 0, got " << v.dump());
  return v.get<int64_t>();
}

uint64_t uint_field(const nlohmann::json& object, const std::string& name, const std::string& source) {
  const nlohmann::json& v = field(object, name, source);
  VC_CHECK(v.is_number_unsigned(), source << ": field '" << name << "' must be a non-negative integer, got " << v.dump());
  return v.get<uint64_t>();
}

double number_field(const nlohmann::json& object, const std::string& name, const std::string& source) {
  const nlohmann::json& v = field(object, name, source);
  VC_CHECK(v.is_number(), source << ": field '" << name << "' must be a number, got " << v.dump());
  return v.get<double>();
}

}  // namespace

TrainerState trainer_state_from_json(const nlohmann::json& json, const std::string& source) {
  VC_CHECK(json.is_object(), source << ": trainer state must be a JSON object");
  const nlohmann::json& format = field(json, "format", source);
  VC_CHECK(format == kTrainerStateFormat, source << ": format is " << format.dump() << ", expected \"" << kTrainerStateFormat << "\"");
  VC_CHECK(int_field(json, "version", source) == kFormatVersion, source << ": unsupported version (expected " << kFormatVersion << ")");
  TrainerState s;
  s.step = int_field(json, "step", source);
  s.epoch = int_field(json, "epoch", source);
  s.position_in_epoch = int_field(json, "position_in_epoch", source);
  const nlohmann::json& rng = field(json, "rng", source);
  s.rng_seed = uint_field(rng, "seed", source + " rng");
  s.rng_offset = uint_field(rng, "offset", source + " rng");
  s.learning_rate = number_field(json, "learning_rate", source);
  s.loss_scale = number_field(json, "loss_scale", source);
  VC_CHECK(s.loss_scale > 0, source << ": loss_scale must be > 0, got " << s.loss_scale);
  s.elapsed_seconds = number_field(json, "elapsed_seconds", source);

  const nlohmann::json& order = field(json, "data_order", source);
  VC_CHECK(order.is_array(), source << ": field 'data_order' must be an array");
  s.data_order.reserve(order.size());
  std::vector<bool> seen(order.size(), false);
  for (size_t i = 0; i < order.size(); ++i) {
    VC_CHECK(order[i].is_number_integer(), source << ": data_order[" << i << "] must be an integer, got " << order[i].dump());
    const int64_t index = order[i].get<int64_t>();
    VC_CHECK(index >= 0 && static_cast<size_t>(index) < order.size(),
             source << ": data_order[" << i << "] = " << index << " is outside [0, " << order.size() << ")");
    VC_CHECK(!seen[index], source << ": data_order is not a permutation: " << index << " appears twice");
    seen[index] = true;
    s.data_order.push_back(index);
  }
  VC_CHECK(static_cast<size_t>(s.position_in_epoch) <= s.data_order.size(),
           source << ": position_in_epoch " << s.position_in_epoch << " is past the end of data_order (size "
                  << s.data_order.size() << ")");

  const nlohmann::json& best = field(json, "best_eval_loss", source);
  VC_CHECK(best.is_null() || best.is_number(), source << ": best_eval_loss must be a number or null, got " << best.dump());
  if (best.is_number()) s.best_eval_loss = best.get<double>();
  s.config = field(json, "config", source);
  return s;
}

TrainerState read_trainer_state(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VC_CHECK(in, "cannot open trainer state '" << path << "': " << std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json json;
  try {
    json = parse_json_input<nlohmann::json>(path, text.str());
  } catch (const std::exception& e) {
    VC_FAIL("trainer state '" << path << "' is not valid JSON: " << e.what());
  }
  return trainer_state_from_json(json, "'" + path + "'");
}

}  // namespace vitscuda::io
