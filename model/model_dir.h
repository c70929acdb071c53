// A model directory is an HF directory that transformers loads as is:
// config.json, model.safetensors, vocab.json, tokenizer_config.json.
#pragma once
#include <memory>
#include <string>

#include "io/tokenizer.h"
#include "model/vits.h"
#include "model/weights.h"

namespace vitscuda::model {

struct LoadedModel {
  std::unique_ptr<VitsModel> model;
  io::Tokenizer tokenizer;
  ImportReport import;  // layout and dtypes the weights came in
};

// Loads and validates config, weights (either weight-norm layout, F32/F16/BF16) and tokenizer.
LoadedModel load_model_dir(const std::string& dir);

// Writes config.json (from the model's config), model.safetensors and copies vocab.json and
// tokenizer_config.json from `tokenizer_source_dir`. Every file is written atomically.
void save_model_dir(const std::string& dir, const VitsModel& model, const std::string& tokenizer_source_dir,
                    WeightNormLayout layout, const std::map<std::string, std::string>& dtypes,
                    const std::map<std::string, std::string>& metadata);

// Writes `content` to `path` atomically (temporary file in the same directory, fsync, rename).
void write_file_atomic(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);

}  // namespace vitscuda::model
