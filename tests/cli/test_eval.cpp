// `vitscuda eval` end to end on the tiny model and a tiny prepared corpus: the JSON report (its
// utterances are the evaluation split's, in order, with finite scores), reproducibility, stdout as
// pure JSON, the training run's eval/mcd agreeing with eval on the checkpoint, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/dataset.h"
#include "train_corpus.h"

using namespace vitscuda;
using namespace vitscuda::testing;
namespace fs = std::filesystem;

namespace {

CommandResult eval(const std::string& args) { return run_command(binary_path("vitscuda") + " eval " + args); }

std::vector<std::string> cache_ids(const std::string& path) {
  const io::DatasetReader r = io::DatasetReader::open(path);
  std::vector<std::string> ids;
  for (size_t i = 0; i < r.size(); ++i) ids.push_back(r.item(i).id);
  return ids;
}

bool finite_number(const nlohmann::json& v) { return v.is_number() && std::isfinite(v.get<double>()); }

}  // namespace

TEST(Eval, ScoresTheEvaluationSplitInOrderIntoJsonReproducibly) {
  const std::string tmp = temp_dir("eval_report");
  const std::string data = prepared_corpus(tmp);
  const std::vector<std::string> ids = cache_ids(data + "/eval.vcds");
  ASSERT_GE(ids.size(), 1u);
  auto r = eval("--model " + tiny_model() + " --data " + data + " --seed 4 --device cpu --output " + tmp + "/a.json");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("mean MCD"), std::string::npos) << r.output;
  const nlohmann::json report = nlohmann::json::parse(slurp(tmp + "/a.json"));
  const nlohmann::json& utts = report.at("utterances");
  ASSERT_EQ(utts.size(), ids.size());
  double mcd_sum = 0, ratio_sum = 0, l1_sum = 0;
  for (size_t i = 0; i < utts.size(); ++i) {
    const nlohmann::json& u = utts[i];
    EXPECT_EQ(u.at("name").get<std::string>(), ids[i]) << "the evaluation split's order";
    for (const char* key : {"mcd", "logmel_l1_dtw", "duration_ratio"})
      EXPECT_TRUE(finite_number(u.at(key)) && u.at(key).get<double>() > 0) << key << ": " << u.dump();
    EXPECT_GE(u.at("frames_synth").get<int64_t>(), 1);
    EXPECT_GE(u.at("frames_ref").get<int64_t>(), 1);
    mcd_sum += u["mcd"].get<double>();
    ratio_sum += u["duration_ratio"].get<double>();
    l1_sum += u["logmel_l1_dtw"].get<double>();
  }
  const double n = static_cast<double>(utts.size());
  // The mean is the plain average; doubles summed in another order differ by rounding (~1e-15 relative).
  EXPECT_NEAR(report.at("mean").at("mcd").get<double>(), mcd_sum / n, 1e-9);
  EXPECT_NEAR(report.at("mean").at("duration_ratio").get<double>(), ratio_sum / n, 1e-9);
  EXPECT_NEAR(report.at("mean").at("logmel_l1_dtw").get<double>(), l1_sum / n, 1e-9);
  const nlohmann::json& s = report.at("settings");
  EXPECT_EQ(s.at("split").get<std::string>(), "eval");
  EXPECT_EQ(s.at("seed").get<uint64_t>(), 4u);
  EXPECT_DOUBLE_EQ(s.at("noise_scale").get<double>(), 0.667);
  EXPECT_DOUBLE_EQ(s.at("noise_scale_duration").get<double>(), 0.8);
  EXPECT_EQ(s.at("cepstral_coefficients").get<int>(), 7);  // the tiny model's 8 mel bins: c1..c7
  EXPECT_EQ(s.at("mel").at("n_mels").get<int>(), 8);

  // The same command again: the same report, byte for byte.
  auto again =
      eval("--model " + tiny_model() + " --data " + data + " --seed 4 --device cpu --output " + tmp + "/b.json");
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_EQ(slurp(tmp + "/a.json"), slurp(tmp + "/b.json"));

  // Without --output, stdout is the JSON document alone (the other lines go to stderr).
  // (run_command adds 2>&1 after the command: the group keeps stderr away from it.)
  auto piped = run_command("{ " + binary_path("vitscuda") + " eval --model " + tiny_model() + " --data " + data +
                           " --seed 4 --device cpu 2>/dev/null; }");
  ASSERT_EQ(piped.status, 0) << piped.output;
  EXPECT_EQ(nlohmann::json::parse(piped.output), report);
}

TEST(Eval, MaxSamplesTakesTheFirstUtterancesAndAnEmptyEvalSplitFallsBackToTraining) {
  const std::string tmp = temp_dir("eval_max_samples");
  const std::string data = prepared_corpus(tmp);
  // Only a training cache: eval scores it, and says so.
  fs::create_directories(tmp + "/train_only");
  fs::copy_file(data + "/train.vcds", tmp + "/train_only/train.vcds");
  auto r = eval("--model " + tiny_model() + " --data " + tmp + "/train_only --max-samples 2 --device cpu --output " +
                tmp + "/t.json");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("has no evaluation utterances; evaluating on the training cache"), std::string::npos)
      << r.output;
  const nlohmann::json report = nlohmann::json::parse(slurp(tmp + "/t.json"));
  const std::vector<std::string> ids = cache_ids(data + "/train.vcds");
  ASSERT_EQ(report.at("utterances").size(), 2u);
  EXPECT_EQ(report["utterances"][0]["name"].get<std::string>(), ids[0]);
  EXPECT_EQ(report["utterances"][1]["name"].get<std::string>(), ids[1]);
  EXPECT_EQ(report.at("settings").at("split").get<std::string>(), "train");
}

TEST(Eval, BadInputIsRefusedWithItsCause) {
  const std::string tmp = temp_dir("eval_errors");
  const std::string data = prepared_corpus(tmp);
  const std::string model = " --model " + tiny_model();
  struct Case {
    std::string args, message;
  };
  fs::create_directories(tmp + "/empty");
  for (const char* name : {"train.vcds", "eval.vcds"}) io::DatasetWriter(tmp + "/empty/" + name, 16000).finish();
  fs::create_directories(tmp + "/nothing");
  fs::create_directories(tmp + "/other_rate");
  {
    io::DatasetWriter w(tmp + "/other_rate/eval.vcds", 22050);
    const std::vector<int32_t> ids = {1, 2, 3};
    const std::vector<float> wave = voiced(0.5, 120, 22050);
    w.add("at22k", -1, ids.data(), ids.size(), wave.data(), wave.size());
    w.finish();
  }
  const std::vector<Case> cases = {
      {" --model " + tmp + "/no_model --data " + data, "model directory " + tmp + "/no_model does not exist"},
      {model + " --data " + tmp + "/no_data", "--data " + tmp + "/no_data is not a directory"},
      {model + " --data " + tmp + "/nothing", "holds neither eval.vcds nor train.vcds"},
      {model + " --data " + tmp + "/empty", tmp + "/empty/train.vcds holds no utterances to evaluate"},
      {model + " --data " + tmp + "/other_rate",
       tmp + "/other_rate/eval.vcds was prepared at 22050 Hz but the model runs at 16000 Hz"},
      {model + " --data " + data + " --max-samples 0", "--max-samples must be at least 1"},
      {model + " --data " + data + " --noise-scale=-1", "--noise-scale must be >= 0"},
  };
  for (const Case& c : cases) {
    auto r = eval(c.args + " --device cpu --output " + tmp + "/out.json");
    EXPECT_EQ(r.status, 1) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(tmp + "/out.json")) << c.args << ": no report for a failed evaluation";
  }
}

// The training run's free-running evaluation is `vitscuda eval` on the same utterances with the run's
// seed: eval on the checkpoint of that step reports the same mean MCD and duration ratio.
TEST(Eval, TheTrainingRunLogsEvalMcdThatEvalOnItsCheckpointReproduces) {
  const std::string tmp = temp_dir("eval_training_hook");
  const std::string data = prepared_corpus(tmp);
  const std::string model = tiny_model_with_small_discriminator(tmp + "/model");
  auto train = run_command(binary_path("vitscuda") + " train --data " + data + " --model " + model + " --out " +
                           tmp + "/run --batch-size 4 --max-steps 2 --eval-every 2 --checkpoint-every 2 "
                           "--eval-max-samples 2 --seed 7 --device cpu");
  ASSERT_EQ(train.status, 0) << train.output;
  EXPECT_NE(train.output.find("eval free-running synthesis: MCD"), std::string::npos) << train.output;
  nlohmann::json logged;
  for (const auto& m : read_metrics(tmp + "/run/metrics.jsonl"))
    if (m.contains("eval_loss")) logged = m;
  ASSERT_TRUE(logged.is_object()) << "no evaluation record in metrics.jsonl";
  EXPECT_EQ(logged.at("step").get<int64_t>(), 2);
  ASSERT_TRUE(finite_number(logged.at("eval_mcd"))) << logged.dump();
  ASSERT_TRUE(finite_number(logged.at("eval_duration_ratio"))) << logged.dump();
  ASSERT_TRUE(finite_number(logged.at("eval_logmel_l1_dtw"))) << logged.dump();
  EXPECT_GT(logged["eval_mcd"].get<double>(), 0.0);
  // And in TensorBoard: the scalars' tags are in the event file.
  std::string events;
  for (const auto& entry : fs::directory_iterator(tmp + "/run/tensorboard")) events += slurp(entry.path().string());
  for (const char* tag : {"eval/mcd", "eval/duration_ratio", "eval/logmel_l1_dtw"})
    EXPECT_NE(events.find(tag), std::string::npos) << tag << " is not in the TensorBoard events";

  auto r = eval("--model " + tmp + "/run/checkpoints/step-2 --data " + data +
                " --max-samples 2 --seed 7 --device cpu --output " + tmp + "/step2.json");
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json report = nlohmann::json::parse(slurp(tmp + "/step2.json"));
  // The checkpoint holds the run's float32 parameters exactly, and both sides synthesise with the same
  // seeds on the CPU: the same audio, so the same scores up to the JSON's round trip of doubles.
  EXPECT_NEAR(report.at("mean").at("mcd").get<double>(), logged["eval_mcd"].get<double>(), 1e-9);
  EXPECT_NEAR(report.at("mean").at("duration_ratio").get<double>(), logged["eval_duration_ratio"].get<double>(), 1e-12);

  // --eval-max-samples 0: the evaluation loss only.
  auto none = run_command(binary_path("vitscuda") + " train --data " + data + " --model " + model + " --out " +
                          tmp + "/run_none --batch-size 4 --max-steps 1 --eval-every 1 --eval-max-samples 0 " +
                          "--device cpu");
  ASSERT_EQ(none.status, 0) << none.output;
  bool evaluated = false;
  for (const auto& m : read_metrics(tmp + "/run_none/metrics.jsonl"))
    if (m.contains("eval_loss")) {
      evaluated = true;
      EXPECT_FALSE(m.contains("eval_mcd")) << m.dump();
    }
  EXPECT_TRUE(evaluated);
}
