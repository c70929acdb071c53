#include "model/weights.h"

#include <set>
#include <sstream>

#include "common/error.h"

namespace vitscuda::model {

namespace {
const std::string kParamG = ".parametrizations.weight.original0";
const std::string kParamV = ".parametrizations.weight.original1";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

std::string canonical_parameter_name(const std::string& n) {
  if (ends_with(n, kParamG)) return n.substr(0, n.size() - kParamG.size()) + ".weight_g";
  if (ends_with(n, kParamV)) return n.substr(0, n.size() - kParamV.size()) + ".weight_v";
  return n;
}

std::string layout_parameter_name(const std::string& canonical, WeightNormLayout layout) {
  if (layout == WeightNormLayout::Parametrizations) {
    if (ends_with(canonical, ".weight_g")) return canonical.substr(0, canonical.size() - 9) + kParamG;
    if (ends_with(canonical, ".weight_v")) return canonical.substr(0, canonical.size() - 9) + kParamV;
  }
  return canonical;
}

std::string ImportReport::summary(const std::string& file) const {
  std::ostringstream os;
  os << file << ": " << missing.size() << " missing, " << unexpected.size() << " unexpected, " << misshapen.size()
     << " misshapen, " << unsupported.size() << " unsupported tensors";
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    for (const std::string& s : v) os << "\n  " << what << ": " << s;
  };
  list("missing", missing);
  list("unexpected", unexpected);
  list("misshapen", misshapen);
  list("unsupported dtype", unsupported);
  return os.str();
}

ImportReport import_parameters(const io::SafetensorsFile& file, ParameterStore& store,
                               const std::string& ignore_prefix) {
  ImportReport report;
  bool saw_parametrizations = false, saw_legacy = false;
  std::set<std::string> found;
  for (const io::SafetensorsEntry& e : file.entries()) {
    if (!ignore_prefix.empty() && e.name.compare(0, ignore_prefix.size(), ignore_prefix) == 0) continue;
    const std::string canonical = canonical_parameter_name(e.name);
    if (canonical != e.name) saw_parametrizations = true;
    if (ends_with(e.name, ".weight_g") || ends_with(e.name, ".weight_v")) saw_legacy = true;
    if (!store.has(canonical)) {
      report.unexpected.push_back(e.name);
      continue;
    }
    if (!found.insert(canonical).second) {
      report.unexpected.push_back(e.name + " (a second copy of " + canonical + ")");
      continue;
    }
    const ParameterInfo& info = store.info(canonical);
    if (e.shape != info.shape) {
      report.misshapen.push_back(e.name + ": file " + shape_str(e.shape) + " vs model " + shape_str(info.shape));
      continue;
    }
    if (e.dtype != "F32" && e.dtype != "F16" && e.dtype != "BF16" && e.dtype != "F64") {
      report.unsupported.push_back(e.name + ": dtype " + e.dtype);
      continue;
    }
    report.source_dtypes[canonical] = e.dtype;
    report.source_names[canonical] = e.name;
  }
  for (const ParameterInfo& p : store.params())
    if (!found.count(p.name)) report.missing.push_back(p.name + " " + shape_str(p.shape));
  if (saw_parametrizations && saw_legacy)
    report.unexpected.push_back("(the file mixes weight_g/weight_v and parametrizations.weight.original0/1 names)");
  report.layout = saw_parametrizations ? WeightNormLayout::Parametrizations : WeightNormLayout::Legacy;
  if (!report.ok()) return report;
  for (const auto& [canonical, name] : report.source_names) store.get(canonical).copy_from(file.load_f32(name));
  return report;
}

void load_parameters_strict(const std::string& path, ParameterStore& store) {
  io::SafetensorsFile file = io::SafetensorsFile::open(path);
  ImportReport report = import_parameters(file, store);
  if (!report.ok()) VC_FAIL(report.summary(path));
}

std::vector<io::SafetensorsWriteEntry> parameter_entries(const ParameterStore& store, WeightNormLayout layout,
                                                         const std::map<std::string, std::string>& dtypes) {
  std::vector<io::SafetensorsWriteEntry> entries;
  entries.reserve(store.params().size());
  for (const ParameterInfo& p : store.params()) {
    auto it = dtypes.find(p.name);
    const std::string dtype = it == dtypes.end() ? "F32" : it->second;
    entries.push_back({layout_parameter_name(p.name, layout), dtype, p.shape, io::encode_f32(store.get(p.name), dtype)});
  }
  return entries;
}

void save_parameters(const std::string& path, const ParameterStore& store, WeightNormLayout layout,
                     const std::map<std::string, std::string>& dtypes,
                     const std::map<std::string, std::string>& metadata) {
  io::write_safetensors(path, parameter_entries(store, layout, dtypes), metadata);
}

}  // namespace vitscuda::model
