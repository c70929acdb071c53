// `vitscuda train` end to end on a tiny corpus: prepare -> train -> the loss falls -> checkpoint ->
// a resumed run equals the uninterrupted one bit for bit -> export -> reload -> the same audio;
// and the failure policy (systematic failures stop the run; non-finite losses stop it).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/audio.h"
#include "io/dataset.h"
#include "support/test_support.h"

using namespace vitscuda;
namespace fs = std::filesystem;
using vitscuda::testing::binary_path;
using vitscuda::testing::run_command;

namespace {

const std::string kModel = vitscuda::testing::data_path("golden/tiny_sdp");

// A voiced signal whose pitch and loudness follow the text, so the loss has something to learn.
std::vector<float> voiced(double seconds, double f0, int rate) {
  std::vector<float> x(static_cast<size_t>(seconds * rate));
  for (size_t i = 0; i < x.size(); ++i) {
    const double t = static_cast<double>(i) / rate;
    double v = 0;
    for (int h = 1; h <= 5; ++h) v += std::sin(2 * M_PI * f0 * h * t) / h;
    x[i] = static_cast<float>(0.25 * (0.6 + 0.4 * std::sin(2 * M_PI * 3 * t)) * v);
  }
  return x;
}

// Writes a 12-utterance LJSpeech corpus and prepares it with the tiny model.
std::string prepared_corpus(const std::string& dir) {
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
                       dir + "/corpus --model " + kModel + " --out " + dir + "/data --eval-fraction 0.1");
  EXPECT_EQ(r.status, 0) << r.output;
  return dir + "/data";
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

}  // namespace

TEST(Train, LossFallsCheckpointsResumeBitExactExportReload) {
  const std::string tmp = vitscuda::testing::temp_dir("train_e2e");
  const std::string data = prepared_corpus(tmp);
  const std::string common = " --data " + data + " --model " + kModel +
                             " --epochs 6 --batch-size 4 --segment-frames 0 --lr 3e-3 --seed 5 --log-every 100";

  // Uninterrupted run.
  auto full = run_command(binary_path("vitscuda") + " train" + common + " --out " + tmp + "/full --checkpoint-every 5");
  ASSERT_EQ(full.status, 0) << full.output;
  auto metrics = read_metrics(tmp + "/full/metrics.jsonl");
  std::vector<double> losses;
  for (const auto& m : metrics)
    if (m.contains("loss")) losses.push_back(m["loss"].get<double>());
  ASSERT_GE(losses.size(), 12u);
  for (double l : losses) ASSERT_TRUE(std::isfinite(l) && l > 0) << "loss " << l;
  // Mean of the first three updates vs the last three: training must make progress.
  const double first = (losses[0] + losses[1] + losses[2]) / 3;
  const double last = (losses[losses.size() - 1] + losses[losses.size() - 2] + losses[losses.size() - 3]) / 3;
  EXPECT_LT(last, 0.9 * first) << "loss did not fall: " << first << " -> " << last;
  // 18 updates, a checkpoint every 5 plus the final one, the last 3 kept.
  for (const char* step : {"step-10", "step-15", "step-18"})
    EXPECT_TRUE(fs::exists(tmp + "/full/checkpoints/" + step + "/MANIFEST.json")) << step;
  EXPECT_FALSE(fs::exists(tmp + "/full/checkpoints/step-5")) << "older checkpoints are pruned";
  EXPECT_TRUE(fs::exists(tmp + "/full/final_model/model.safetensors"));

  // Interrupted after 7 updates (mid-epoch), then resumed: identical final parameters.
  auto part = run_command(binary_path("vitscuda") + " train" + common + " --out " + tmp + "/resumed --max-steps 7");
  ASSERT_EQ(part.status, 0) << part.output;
  auto rest = run_command(binary_path("vitscuda") + " train" + common + " --out " + tmp + "/resumed --resume");
  ASSERT_EQ(rest.status, 0) << rest.output;
  EXPECT_NE(rest.output.find("resumed from"), std::string::npos) << rest.output;
  EXPECT_TRUE(slurp(tmp + "/full/final_model/model.safetensors") == slurp(tmp + "/resumed/final_model/model.safetensors"))
      << "a resumed run must end with the same parameters as an uninterrupted one";

  // Starting over in a run directory that has checkpoints is refused (no silent overwrite).
  auto again = run_command(binary_path("vitscuda") + " train" + common + " --out " + tmp + "/full");
  EXPECT_NE(again.status, 0);
  EXPECT_NE(again.output.find("--resume"), std::string::npos) << again.output;

  // Export for transformers, re-import, and synthesise: the same audio as the trained model.
  auto exp = run_command(binary_path("weights_convert") + " export " + tmp + "/full/final_model " + tmp + "/hf");
  ASSERT_EQ(exp.status, 0) << exp.output;
  auto imp = run_command(binary_path("weights_convert") + " import " + tmp + "/hf " + tmp + "/reloaded");
  ASSERT_EQ(imp.status, 0) << imp.output;
  for (const char* which : {"final_model", "reloaded"}) {
    const std::string dir = std::string(which) == "final_model" ? tmp + "/full/final_model" : tmp + "/reloaded";
    auto s = run_command(binary_path("vitscuda") + " synth --model " + dir + " --text \"hello\" --seed 3 --out " + tmp +
                         "/" + which + ".wav --wav-format float");
    ASSERT_EQ(s.status, 0) << s.output;
  }
  EXPECT_EQ(io::read_audio(tmp + "/final_model.wav").samples, io::read_audio(tmp + "/reloaded.wav").samples);
}

TEST(Train, EverySampleFailingStopsWithinSeconds) {
  const std::string tmp = vitscuda::testing::temp_dir("train_all_fail");
  // A cache whose token ids are all outside the model's vocabulary: every sample fails validation.
  fs::create_directories(tmp + "/data");
  {
    io::DatasetWriter w(tmp + "/data/train.vcds", 16000);
    for (int i = 0; i < 10; ++i) {
      std::vector<int32_t> ids = {1000, 1001};
      std::vector<float> wave = voiced(0.5, 120, 16000);
      w.add("bad" + std::to_string(i), -1, ids.data(), ids.size(), wave.data(), wave.size());
    }
    w.finish();
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_command(binary_path("vitscuda") + " train --data " + tmp + "/data --model " + kModel + " --out " + tmp +
                       "/run --batch-size 2");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("first batch failed"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("outside the vocabulary"), std::string::npos) << r.output;
  EXPECT_LT(seconds, 30.0);
  EXPECT_FALSE(fs::exists(tmp + "/run/final_model")) << "a failed run must not produce a final model";
}

TEST(Train, NonFiniteLossesStopAfterTheLimit) {
  const std::string tmp = vitscuda::testing::temp_dir("train_nan");
  const std::string data = prepared_corpus(tmp);
  auto r = run_command(binary_path("vitscuda") + " train --data " + data + " --model " + kModel + " --out " + tmp +
                       "/run --batch-size 2 --epochs 3 --max-bad-steps 3 --inject-nan-steps 2,3,4");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("3 consecutive steps with a non-finite loss"), std::string::npos) << r.output;
  // One isolated bad step is reported and skipped, and training carries on.
  auto once = run_command(binary_path("vitscuda") + " train --data " + data + " --model " + kModel + " --out " + tmp +
                          "/run_once --batch-size 2 --epochs 1 --max-bad-steps 3 --inject-nan-steps 2");
  EXPECT_EQ(once.status, 0) << once.output;
  EXPECT_NE(once.output.find("not finite; the update was skipped"), std::string::npos) << once.output;
}

TEST(Train, SigtermSavesACheckpointAndResumeContinues) {
  const std::string tmp = vitscuda::testing::temp_dir("train_sigterm");
  const std::string data = prepared_corpus(tmp);
  const std::string train = binary_path("vitscuda") + " train --data " + data + " --model " + kModel + " --out " + tmp +
                            "/run --batch-size 2 --epochs 1000 --segment-frames 0 --checkpoint-every 0 --log-every 1000";
  // Start a long run, wait until it has made progress, then ask it to stop.
  const std::string script = "(" + train + " > " + tmp + "/log.txt 2>&1 & pid=$!; " + "for i in $(seq 100); do [ -s " +
                             tmp + "/run/metrics.jsonl ] && break; sleep 0.1; done; sleep 0.5; kill -TERM $pid; " +
                             "wait $pid; echo \"exit=$?\")";
  auto r = run_command("bash -c '" + script + "'");
  EXPECT_NE(r.output.find("exit=130"), std::string::npos) << r.output << slurp(tmp + "/log.txt");
  const std::string log = slurp(tmp + "/log.txt");
  EXPECT_NE(log.find("terminated (SIGTERM)"), std::string::npos) << log;
  // The checkpoint it wrote is valid and the run resumes from it.
  auto resumed = run_command(binary_path("vitscuda") + " train --data " + data + " --model " + kModel + " --out " +
                             tmp + "/run --batch-size 2 --epochs 1000 --segment-frames 0 --max-steps 1 --resume");
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
}
