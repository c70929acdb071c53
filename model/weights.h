// Moving parameters between a ParameterStore and HF safetensors files.
// Accepts both weight-norm layouts (legacy weight_g / weight_v and
// parametrizations.weight.original0 / original1) and F32, F16, BF16, F64 tensors.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "io/safetensors.h"

namespace vitscuda::model {

enum class WeightNormLayout { Legacy, Parametrizations };

// What an import found; `ok()` when every declared parameter was loaded and nothing was unexpected.
struct ImportReport {
  std::vector<std::string> missing;     // declared, not in the file
  std::vector<std::string> unexpected;  // in the file, not declared
  std::vector<std::string> misshapen;   // "name: file [..] vs model [..]"
  std::vector<std::string> unsupported;  // "name: dtype I64"
  WeightNormLayout layout = WeightNormLayout::Legacy;
  std::map<std::string, std::string> source_dtypes;  // canonical name -> file dtype
  std::map<std::string, std::string> source_names;   // canonical name -> name in the file
  bool ok() const { return missing.empty() && unexpected.empty() && misshapen.empty() && unsupported.empty(); }
  std::string summary(const std::string& file) const;  // lists every problem
};

// The canonical (legacy weight-norm) name of a file's tensor name.
std::string canonical_parameter_name(const std::string& file_name);
// The name a canonical parameter has in the given layout.
std::string layout_parameter_name(const std::string& canonical, WeightNormLayout layout);

// Loads every declared parameter of `store` from `file`. Returns the report; tensors are loaded only when it is ok().
// Tensors whose names start with `ignore_prefix` (when not empty) are skipped: another module's (the
// discriminator.* tensors of a finetune-hf-vits "-train" checkpoint).
ImportReport import_parameters(const io::SafetensorsFile& file, ParameterStore& store,
                               const std::string& ignore_prefix = {});

// Throws with the report's summary unless the import is clean.
void load_parameters_strict(const std::string& safetensors_path, ParameterStore& store);

// Every parameter as a safetensors entry: names in `layout`, each in dtype `dtypes[name]` (default F32), in
// declaration order.
std::vector<io::SafetensorsWriteEntry> parameter_entries(const ParameterStore& store, WeightNormLayout layout,
                                                         const std::map<std::string, std::string>& dtypes);
// Writes parameter_entries(store, layout, dtypes) with `metadata`.
void save_parameters(const std::string& path, const ParameterStore& store, WeightNormLayout layout,
                     const std::map<std::string, std::string>& dtypes, const std::map<std::string, std::string>& metadata);

}  // namespace vitscuda::model
