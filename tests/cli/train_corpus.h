// Shared by the `vitscuda train` command-line tests: a tiny prepared corpus and file helpers.
#pragma once
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/audio.h"
#include "support/test_support.h"

namespace vitscuda::testing {

inline const std::string& tiny_model() {
  static const std::string path = data_path("golden/tiny_sdp");
  return path;
}

// The tiny model with a small discriminator in its config (finetune-hf-vits' field names; the default one has
// 1024-channel convs, 46.7 M parameters), as a model directory of its own: what the tests of a run's mechanics
// train with the default objective, full, so that its discriminator files go through them too.
inline std::string tiny_model_with_small_discriminator(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(tiny_model()))
    fs::copy_file(entry.path(), dir + "/" + entry.path().filename().string(), fs::copy_options::overwrite_existing);
  std::ifstream in(tiny_model() + "/config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  config["discriminator_kernel_size"] = 5;
  config["discriminator_stride"] = 3;
  config["discriminator_periods"] = {2, 3, 5, 7, 11};
  config["discriminator_period_channels"] = {1, 4, 8, 16, 16};
  config["discriminator_scale_channels"] = {1, 8, 32, 64};
  std::ofstream(dir + "/config.json") << config.dump(2) << "\n";
  return dir;
}

// A voiced signal whose pitch and loudness follow the text, so the loss has something to learn.
inline std::vector<float> voiced(double seconds, double f0, int rate) {
  std::vector<float> x(static_cast<size_t>(seconds * rate));
  for (size_t i = 0; i < x.size(); ++i) {
    const double t = static_cast<double>(i) / rate;
    double v = 0;
    for (int h = 1; h <= 5; ++h) v += std::sin(2 * M_PI * f0 * h * t) / h;
    x[i] = static_cast<float>(0.25 * (0.6 + 0.4 * std::sin(2 * M_PI * 3 * t)) * v);
  }
  return x;
}

// Writes a 12-utterance LJSpeech corpus (utt0..utt11) and prepares it with the tiny model into
// DIR/data (an evaluation split of 10%, at least one item).
inline std::string prepared_corpus(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir + "/corpus/wavs");
  std::ofstream meta(dir + "/corpus/metadata.csv");
  const char* texts[] = {"a dog runs", "the cat sat", "hello world", "blue sky", "green hills", "we go home",
                         "red apple",  "fast cars",   "one two",     "big tree", "cold water",  "hot sun"};
  for (int i = 0; i < 12; ++i) {
    const std::string id = "utt" + std::to_string(i);
    io::write_wav(dir + "/corpus/wavs/" + id + ".wav", voiced(0.6 + 0.05 * i, 110 + 10 * i, 16000), 16000);
    meta << id << "|" << texts[i] << "|" << texts[i] << "\n";
  }
  meta.close();
  auto r = run_command(binary_path("vitscuda") + " prepare --manifest " + dir + "/corpus/metadata.csv --audio-dir " +
                       dir + "/corpus --model " + tiny_model() + " --out " + dir + "/data --eval-fraction 0.1");
  EXPECT_EQ(r.status, 0) << r.output;
  return dir + "/data";
}

inline std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// (step, loss) of every training record of a metrics log, in order.
inline std::vector<std::pair<int64_t, double>> step_losses(const std::string& path) {
  std::vector<std::pair<int64_t, double>> out;
  for (const auto& m : read_metrics(path))
    if (m.contains("loss")) out.emplace_back(m["step"].get<int64_t>(), m["loss"].get<double>());
  return out;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

}  // namespace vitscuda::testing
