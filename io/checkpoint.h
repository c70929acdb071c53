// Training checkpoints: an all-or-nothing directory protocol with a checksummed manifest.
//
// Layout: <checkpoints>/step-N/ holds the files the trainer writes (model.safetensors,
// optimizer.safetensors, trainer_state.json, ...) and MANIFEST.json, which lists every one of
// them with its byte size and CRC32.
//
// Writing: files go into <checkpoints>/step-N.tmp-<pid>/; commit() fsyncs each file, writes
// MANIFEST.json last, fsyncs it and the directory, renames the directory to step-N (atomic) and
// fsyncs the parent. A crash at any point leaves either the complete step-N or a *.tmp-* leftover
// that readers skip; previous checkpoints are never touched.
//
// Reading: verify_checkpoint() checks MANIFEST.json against its own CRC32 (field manifest_crc32),
// then that every listed file is present with the listed size and CRC32, and names the first file
// that is not. CRC32 detects accidental corruption (bit flips,
// truncation, torn writes); it is not cryptographic and does not detect deliberate tampering.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/optimizer.h"
#include "engine/parameters.h"
#include "engine/tensor.h"

namespace vitscuda::io {

inline constexpr const char* kCheckpointManifestName = "MANIFEST.json";
inline constexpr const char* kModelFileName = "model.safetensors";
inline constexpr const char* kOptimizerFileName = "optimizer.safetensors";
inline constexpr const char* kTrainerStateFileName = "trainer_state.json";

struct CheckpointFile {
  std::string name;  // relative to the checkpoint directory, no '/'
  uint64_t size = 0;
  uint32_t crc32 = 0;
};

struct CheckpointInfo {
  std::string path;  // the step-N directory
  int64_t step = 0;
  std::vector<CheckpointFile> files;         // as listed in MANIFEST.json
  std::vector<std::string> unlisted_files;   // present in the directory but not in the manifest (not verified)
  std::string path_of(const std::string& name) const { return path + "/" + name; }
  bool has_file(const std::string& name) const;
};

// "step-<step>" inside `checkpoints_dir`.
std::string checkpoint_path(const std::string& checkpoints_dir, int64_t step);

// Builds one checkpoint. Callers write each file at path_for(name) with their own writer (e.g.
// write_safetensors) or with write_file / write_json, then call commit(). A writer destroyed or
// aborted before commit() removes its temporary directory. Errors throw vitscuda::Error naming the
// path and the errno text; the temporary directory is removed before the error propagates from
// commit() or write_file().
class CheckpointWriter {
 public:
  // Creates <checkpoints_dir>/step-<step>.tmp-<pid>/ (and checkpoints_dir itself if needed).
  CheckpointWriter(const std::string& checkpoints_dir, int64_t step);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Where to write file `name` (a plain file name; registers it for the manifest).
  std::string path_for(const std::string& name);
  // Registers a file the caller has written into temp_dir() under `name`.
  void add_file(const std::string& name);
  // Writes `bytes` to file `name` (registered), checking every write; on failure removes the
  // temporary directory and throws.
  void write_file(const std::string& name, const void* bytes, size_t size);
  void write_file(const std::string& name, const std::string& text) { write_file(name, text.data(), text.size()); }
  void write_json(const std::string& name, const nlohmann::json& value);

  // Checksums and fsyncs every registered file (each must exist; an unregistered file in the
  // directory is an error, so the manifest describes the whole directory), writes MANIFEST.json,
  // renames the directory to step-<step>, replacing an existing checkpoint of the same step
  // (atomically where the file system supports RENAME_EXCHANGE), and fsyncs the parent.
  CheckpointInfo commit();
  // Removes the temporary directory (also done by the destructor when not committed).
  void abort();

  const std::string& temp_dir() const { return temp_dir_; }
  const std::string& final_dir() const { return final_dir_; }
  int64_t step() const { return step_; }

 private:
  void fail_and_clean(const std::string& message);
  std::string checkpoints_dir_;
  int64_t step_;
  std::string temp_dir_;
  std::string final_dir_;
  std::vector<std::string> names_;  // registration order
  bool finished_ = false;
};

// Verifies a checkpoint directory against its MANIFEST.json (present, parseable, every listed file
// present with the listed size and CRC32). Throws vitscuda::Error naming the checkpoint and the
// first bad file.
CheckpointInfo verify_checkpoint(const std::string& checkpoint_dir);

// One directory entry of a checkpoints directory that latest_valid_checkpoint passed over.
struct SkippedCheckpoint {
  std::string path;
  std::string reason;
};

struct CheckpointScan {
  std::optional<CheckpointInfo> latest;    // the newest valid checkpoint, if any
  std::vector<SkippedCheckpoint> skipped;  // invalid step-N directories and *.tmp-* leftovers
};

// Scans step-N directories from the highest N down and returns the first that verifies. Every
// invalid checkpoint passed over, and every *.tmp-* leftover, is listed in `skipped` and also
// written as one line to `report` (unless it is null). A missing directory is an empty scan.
CheckpointScan latest_valid_checkpoint(const std::string& checkpoints_dir, std::ostream* report);
CheckpointScan latest_valid_checkpoint(const std::string& checkpoints_dir);  // reports to std::cerr

// Removes *.tmp-<pid> leftovers whose process is no longer running (a live process may still be
// writing: those are reported and kept). Returns the removed paths; each is also reported.
std::vector<std::string> remove_stale_temporary_checkpoints(const std::string& checkpoints_dir, std::ostream* report);

// Keeps the `keep_last_k` (>= 1) newest valid checkpoints and deletes every step-N directory
// older than the oldest kept one (valid or not). Invalid checkpoints newer than the newest valid
// one are kept for inspection and reported. Never deletes the newest valid checkpoint. Returns
// the removed paths.
std::vector<std::string> prune_checkpoints(const std::string& checkpoints_dir, int keep_last_k, std::ostream* report);

// ------------------------------------------------------------------ optimizer.safetensors
// exp_avg and exp_avg_sq as flat F32 tensors; "step" (and "numel", "format") in the metadata.
struct OptimizerState {
  Tensor exp_avg;     // f32 [numel]
  Tensor exp_avg_sq;  // f32 [numel]
  int64_t step = 0;
};
void write_optimizer_state(const std::string& path, const AdamW& optimizer);
void write_optimizer_state(const std::string& path, const OptimizerState& state);
OptimizerState read_optimizer_state(const std::string& path);
// Restores `optimizer` from the file; the element count must match (error names both counts).
// With the parameter store the optimizer serves, a file whose moments are packed (each parameter
// right after the previous one, as written before parameters were aligned in the flat buffers) is
// placed at the store's aligned offsets.
void load_optimizer_state(const std::string& path, AdamW& optimizer, const ParameterStore* layout = nullptr);

// ------------------------------------------------------------------ trainer_state.json
struct TrainerState {
  int64_t step = 0;               // optimizer updates done
  int64_t epoch = 0;              // completed epochs
  int64_t position_in_epoch = 0;  // items of data_order already consumed in the current epoch
  uint64_t rng_seed = 0;
  uint64_t rng_offset = 0;        // Philox words consumed
  double learning_rate = 0;       // the rate of the last update
  double loss_scale = 1;          // dynamic fp16 loss scale (1 in fp32 training)
  std::vector<int64_t> data_order;  // permutation of the dataset for the current epoch
  std::optional<double> best_eval_loss;  // none before the first evaluation
  double elapsed_seconds = 0;     // training time summed over runs
  nlohmann::json config = nlohmann::json::object();  // the run's configuration, as given
};

nlohmann::json trainer_state_to_json(const TrainerState& state);
// Strict: every field present with the right type; data_order must be a permutation of
// [0, size) and position_in_epoch within [0, size]. Errors name `source` and the field.
TrainerState trainer_state_from_json(const nlohmann::json& json, const std::string& source);
TrainerState read_trainer_state(const std::string& path);

}  // namespace vitscuda::io
