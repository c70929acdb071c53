// weights_convert: HF VitsModel directories <-> vitscuda model directories.
//   import HF_DIR OUT_DIR     validate every tensor against the config, write canonical F32 weights; a
//                             finetune-hf-vits "-train" checkpoint's discriminator.* tensors go to
//                             OUT_DIR/discriminator.safetensors
//   export DIR HF_OUT         write an HF directory back (by default in the source's layout and dtypes);
//                             --with-discriminator adds the discriminator as finetune-hf-vits saves it
//   init --config FILE OUT    a randomly initialised model (transformers' init scheme; HiFi-GAN as VITS: N(0, 0.01))
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/discriminator.h"
#include "model/model_dir.h"

namespace fs = std::filesystem;
using namespace vitscuda;

namespace {

const char* kLayoutKey = "vitscuda.source_layout";
const char* kDtypesKey = "vitscuda.source_dtypes";

void print_counts(const ParameterStore& store) {
  std::printf("parameters by module:\n");
  for (const auto& [module, count] : store.counts_by_module())
    std::printf("  %-20s %12lld\n", module.c_str(), static_cast<long long>(count));
  std::printf("  %-20s %12lld\n", "total", static_cast<long long>(store.count()));
}

std::string layout_name(model::WeightNormLayout l) {
  return l == model::WeightNormLayout::Legacy ? "legacy" : "parametrizations";
}

model::WeightNormLayout parse_layout(const std::string& s) {
  if (s == "legacy") return model::WeightNormLayout::Legacy;
  if (s == "parametrizations") return model::WeightNormLayout::Parametrizations;
  VC_FAIL("unknown weight-norm layout '" << s << "' (expected legacy or parametrizations)");
}

int run_import(const std::string& hf_dir, const std::string& out_dir) {
  const std::string config_path = (fs::path(hf_dir) / "config.json").string();
  const std::string weights_path = (fs::path(hf_dir) / "model.safetensors").string();
  VC_CHECK(fs::exists(config_path), hf_dir << " has no config.json");
  VC_CHECK(fs::exists(weights_path), hf_dir << " has no model.safetensors");
  model::VitsModel vits(io::VitsConfig::from_file(config_path));
  io::SafetensorsFile file = io::SafetensorsFile::open(weights_path);
  model::ImportReport report = model::import_parameters(file, vits.params(), model::kDiscriminatorPrefix);
  if (!report.ok()) {
    std::fprintf(stderr, "error: %s\n", report.summary(weights_path).c_str());
    return 1;
  }
  std::map<std::string, int> dtype_counts;
  nlohmann::json dtypes = nlohmann::json::object();
  for (const auto& [name, dtype] : report.source_dtypes) {
    dtype_counts[dtype]++;
    dtypes[name] = dtype;
    if (dtype == "F64")
      std::fprintf(stderr, "warning: %s is F64 in the source; vitscuda keeps F32 weights, so export narrows it\n",
                   name.c_str());
  }
  std::printf("read %s: %zu tensors, %s weight-norm layout;", weights_path.c_str(), report.source_dtypes.size(),
              layout_name(report.layout).c_str());
  for (const auto& [dtype, n] : dtype_counts) std::printf(" %d %s", n, dtype.c_str());
  std::printf("\n");
  print_counts(vits.params());
  // The discriminator first: a mismatch with the config is an error before anything is written.
  std::unique_ptr<model::Discriminator> disc;
  model::DiscriminatorImport disc_import;
  if (model::has_discriminator_tensors(file)) {
    disc = std::make_unique<model::Discriminator>(vits.config());
    disc_import = model::import_discriminator(file, *disc);
    std::printf("read the discriminator: %d tensors, %s weights, %d sub-discriminators, %lld parameters\n",
                disc_import.tensors, model::discriminator_layout_name(disc_import.layout),
                disc->num_discriminators(), static_cast<long long>(disc->params().count()));
  }
  model::save_model_dir(out_dir, vits, hf_dir, model::WeightNormLayout::Legacy, {},
                        {{"format", "pt"}, {kLayoutKey, layout_name(report.layout)}, {kDtypesKey, dtypes.dump()}});
  if (disc) {
    nlohmann::json disc_dtypes(disc_import.source_dtypes);
    model::save_discriminator_file(
        (fs::path(out_dir) / model::kDiscriminatorFileName).string(), *disc,
        {{"format", "pt"},
         {model::kDiscriminatorLayoutKey, model::discriminator_layout_name(disc_import.layout)},
         {model::kDiscriminatorDtypesKey, disc_dtypes.dump()}});
    // The discriminator fields belong in config.json even when the checkpoint's config left them at their defaults.
    model::write_file_atomic((fs::path(out_dir) / "config.json").string(), vits.config().to_json(true).dump(2) + "\n");
  }
  std::printf("wrote %s\n", out_dir.c_str());
  return 0;
}

// The source dtypes recorded in `meta[key]` (F64 narrowed to F32: vitscuda keeps F32 weights), or `fallback`.
std::map<std::string, std::string> recorded_dtypes(const std::map<std::string, std::string>& meta, const char* key,
                                                   const std::map<std::string, std::string>& fallback) {
  auto it = meta.find(key);
  if (it == meta.end()) return fallback;
  std::map<std::string, std::string> dtypes;
  nlohmann::json j = nlohmann::json::parse(it->second);
  for (auto& [name, dtype] : j.items())
    dtypes[name] = dtype.get<std::string>() == "F64" ? "F32" : dtype.get<std::string>();
  return dtypes;
}

int run_export(const std::string& dir, const std::string& out_dir, const std::string& layout_arg,
               const std::string& dtype_arg, bool with_discriminator, const std::string& disc_layout_arg) {
  model::LoadedModel loaded = model::load_model_dir(dir);
  io::SafetensorsFile file = io::SafetensorsFile::open((fs::path(dir) / "model.safetensors").string());
  const auto& meta = file.metadata();
  model::WeightNormLayout layout = model::WeightNormLayout::Legacy;
  if (layout_arg == "source") {
    auto it = meta.find(kLayoutKey);
    layout = it == meta.end() ? loaded.import.layout : parse_layout(it->second);
  } else {
    layout = parse_layout(layout_arg);
  }
  std::map<std::string, std::string> dtypes;
  if (dtype_arg == "source") {
    dtypes = recorded_dtypes(meta, kDtypesKey, loaded.import.source_dtypes);
  } else {
    for (const ParameterInfo& p : loaded.model->params().params()) dtypes[p.name] = dtype_arg;
  }
  const std::string disc_path = (fs::path(dir) / model::kDiscriminatorFileName).string();
  // Read before anything is written, so a bad discriminator leaves no half-written output.
  std::unique_ptr<model::Discriminator> disc;
  if (with_discriminator) {
    VC_CHECK(fs::exists(disc_path), "--with-discriminator: " << dir << " has no " << model::kDiscriminatorFileName
                                                             << " (import a finetune-hf-vits \"-train\" checkpoint)");
    disc = model::load_discriminator_file(disc_path, loaded.model->config());
  }
  model::save_model_dir(out_dir, *loaded.model, dir, layout, dtypes, {{"format", "pt"}});
  if (disc) {
    // As finetune-hf-vits' VitsModelForPreTraining.save_pretrained: one model.safetensors with the generator's
    // tensors and the discriminator's discriminator.* tensors, and a config with the discriminator fields.
    io::SafetensorsFile disc_file = io::SafetensorsFile::open(disc_path);
    const auto& disc_meta = disc_file.metadata();
    model::DiscriminatorLayout disc_layout = model::DiscriminatorLayout::Plain;
    if (disc_layout_arg == "source") {
      auto it = disc_meta.find(model::kDiscriminatorLayoutKey);
      if (it != disc_meta.end()) disc_layout = model::parse_discriminator_layout(it->second);
    } else {
      disc_layout = model::parse_discriminator_layout(disc_layout_arg);
    }
    std::map<std::string, std::string> disc_dtypes;
    if (dtype_arg == "source")
      disc_dtypes = recorded_dtypes(disc_meta, model::kDiscriminatorDtypesKey.c_str(), {});
    else
      for (const ParameterInfo& p : disc->params().params()) disc_dtypes[p.name] = dtype_arg;
    std::vector<io::SafetensorsWriteEntry> entries = model::parameter_entries(loaded.model->params(), layout, dtypes);
    for (io::SafetensorsWriteEntry& e : model::discriminator_entries(*disc, disc_layout, disc_dtypes))
      entries.push_back(std::move(e));
    io::write_safetensors((fs::path(out_dir) / "model.safetensors").string(), entries, {{"format", "pt"}});
    model::write_file_atomic((fs::path(out_dir) / "config.json").string(),
                             loaded.model->config().to_json(true).dump(2) + "\n");
    std::printf("wrote %s (%s weight-norm layout, dtypes %s; discriminator with %s weights)\n", out_dir.c_str(),
                layout_name(layout).c_str(), dtype_arg.c_str(), model::discriminator_layout_name(disc_layout));
    return 0;
  }
  std::printf("wrote %s (%s weight-norm layout, dtypes %s)\n", out_dir.c_str(), layout_name(layout).c_str(),
              dtype_arg.c_str());
  if (fs::exists(disc_path))
    std::printf("note: %s of %s not exported (pass --with-discriminator)\n", model::kDiscriminatorFileName.c_str(),
                dir.c_str());
  return 0;
}

int run_init(const std::string& config_path, const std::string& out_dir, uint64_t seed, std::string tokenizer_dir) {
  model::VitsModel vits(io::VitsConfig::from_file(config_path));
  vits.initialize(seed);
  if (tokenizer_dir.empty()) tokenizer_dir = fs::path(config_path).parent_path().string();
  if (tokenizer_dir.empty()) tokenizer_dir = ".";
  VC_CHECK(fs::exists(fs::path(tokenizer_dir) / "vocab.json"),
           "no vocab.json in " << tokenizer_dir << ": pass --tokenizer DIR (a directory with vocab.json and tokenizer_config.json)");
  print_counts(vits.params());
  model::save_model_dir(out_dir, vits, tokenizer_dir, model::WeightNormLayout::Legacy, {}, {{"format", "pt"}});
  std::printf("wrote a randomly initialised model (seed %llu) to %s\n", static_cast<unsigned long long>(seed),
              out_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"weights_convert: HF VitsModel directories <-> vitscuda model directories"};
  app.require_subcommand(1);
  std::string in_dir, out_dir, layout = "source", dtype = "source", config_path, tokenizer_dir,
      disc_layout = "source";
  bool with_discriminator = false;
  uint64_t seed = 0;
  int rc = 0;

  CLI::App* imp = app.add_subcommand(
      "import", "Import an HF VitsModel directory (either weight-norm layout; F32/F16/BF16), or a finetune-hf-vits "
                "\"-train\" checkpoint (its discriminator goes to discriminator.safetensors)");
  imp->add_option("hf_dir", in_dir, "HF directory: config.json, model.safetensors, vocab.json")->required();
  imp->add_option("out_dir", out_dir, "Output model directory")->required();
  imp->callback([&] { rc = run_import(in_dir, out_dir); });

  CLI::App* exp = app.add_subcommand("export", "Write an HF directory that transformers loads");
  exp->add_option("model_dir", in_dir, "vitscuda model directory")->required();
  exp->add_option("hf_out", out_dir, "Output HF directory")->required();
  exp->add_option("--layout", layout, "Weight-norm names: source, legacy or parametrizations")
      ->check(CLI::IsMember({"source", "legacy", "parametrizations"}));
  exp->add_option("--dtype", dtype, "Tensor dtype: source, F32, F16 or BF16")
      ->check(CLI::IsMember({"source", "F32", "F16", "BF16"}));
  exp->add_flag("--with-discriminator", with_discriminator,
                "Also write the discriminator (from discriminator.safetensors) as finetune-hf-vits' "
                "VitsModelForPreTraining saves it, with the discriminator fields in config.json");
  exp->add_option("--discriminator-layout", disc_layout,
                  "Discriminator conv weights: source, plain (weight norm removed, as finetune-hf-vits saves), "
                  "legacy (weight_g/weight_v) or parametrizations")
      ->check(CLI::IsMember({"source", "plain", "legacy", "parametrizations"}));
  exp->callback([&] { rc = run_export(in_dir, out_dir, layout, dtype, with_discriminator, disc_layout); });

  CLI::App* init = app.add_subcommand("init", "Create a randomly initialised model from a config.json");
  init->add_option("--config", config_path, "HF config.json")->required();
  init->add_option("out_dir", out_dir, "Output model directory")->required();
  init->add_option("--seed", seed, "Initialisation seed");
  init->add_option("--tokenizer", tokenizer_dir, "Directory with vocab.json and tokenizer_config.json (default: the config's directory)");
  init->callback([&] { rc = run_init(config_path, out_dir, seed, tokenizer_dir); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return rc;
}
