// `vitscuda train` end to end on a tiny corpus: prepare -> train -> the loss falls -> checkpoint ->
// a resumed run equals the uninterrupted one bit for bit -> export -> reload -> the same audio;
// and the failure policy (systematic failures stop the run; non-finite losses stop it).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/exit_status.h"
#include "io/audio.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "train_corpus.h"

using namespace vitscuda;
using namespace vitscuda::testing;
namespace fs = std::filesystem;

namespace {

const std::string kModel = tiny_model();

}  // namespace

TEST(Train, LossFallsCheckpointsResumeBitExactExportReload) {
  const std::string tmp = vitscuda::testing::temp_dir("train_e2e");
  const std::string data = prepared_corpus(tmp);
  const std::string common = " --data " + data + " --model " + kModel +
                             " --objective mel --epochs 6 --batch-size 4 --segment-frames 0 --lr 3e-3 --seed 5 --log-every 100";

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
  auto r = run_command(binary_path("vitscuda") + " train --data " + tmp + "/data --model " +
                       tiny_model_with_small_discriminator(tmp + "/model") + " --out " + tmp + "/run --batch-size 2");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("first batch failed"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("outside the vocabulary"), std::string::npos) << r.output;
  EXPECT_LT(seconds, 30.0);
  EXPECT_FALSE(fs::exists(tmp + "/run/final_model")) << "a failed run must not produce a final model";
}

// An item the alignment search cannot align (more tokens than frames) or too short for the window, from a
// cache prepared before prepare rejected such items: refused by name and reason, the rest trains.
TEST(Train, VaeRefusesUnalignableItemsByName) {
  const std::string tmp = vitscuda::testing::temp_dir("train_unalignable");
  fs::create_directories(tmp + "/data");
  {
    io::DatasetWriter w(tmp + "/data/train.vcds", 16000);
    for (int i = 0; i < 6; ++i) {
      std::vector<int32_t> ids = {1, 5, 9, 13, 17, 21, 25};
      std::vector<float> wave = voiced(0.5, 110 + 10 * i, 16000);
      w.add("good" + std::to_string(i), -1, ids.data(), ids.size(), wave.data(), wave.size());
    }
    std::vector<int32_t> many(120);
    for (size_t t = 0; t < many.size(); ++t) many[t] = 1 + static_cast<int32_t>(t % 30);
    std::vector<float> short_wave = voiced(0.1, 150, 16000);  // 100 frames of 16 samples
    w.add("wordy", -1, many.data(), many.size(), short_wave.data(), short_wave.size());
    std::vector<int32_t> few = {1, 2, 3};
    std::vector<float> tiny_wave = voiced(0.02, 150, 16000);  // 20 frames
    w.add("clipped", -1, few.data(), few.size(), tiny_wave.data(), tiny_wave.size());
    w.finish();
  }
  auto r = run_command(binary_path("vitscuda") + " train --objective vae --data " + tmp + "/data --model " + kModel +
                       " --out " + tmp + "/run --batch-size 8 --epochs 1 --segment-frames 32 --max-error-rate 0.5");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("more_tokens_than_frames"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("wordy: 120 tokens for 100 frames"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("shorter_than_segment"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("clipped: 20 frames"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(tmp + "/run/final_model/model.safetensors")) << r.output;
}

TEST(Train, NonFiniteLossesStopAfterTheLimit) {
  const std::string tmp = vitscuda::testing::temp_dir("train_nan");
  const std::string data = prepared_corpus(tmp);
  const std::string model = tiny_model_with_small_discriminator(tmp + "/model");
  auto r = run_command(binary_path("vitscuda") + " train --data " + data + " --model " + model + " --out " + tmp +
                       "/run --batch-size 2 --epochs 3 --max-bad-steps 3 --inject-nan-steps 2,3,4");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("3 consecutive steps with a non-finite loss"), std::string::npos) << r.output;
  // One isolated bad step is reported and skipped, and training carries on.
  auto once = run_command(binary_path("vitscuda") + " train --data " + data + " --model " + model + " --out " + tmp +
                          "/run_once --batch-size 2 --epochs 1 --max-bad-steps 3 --inject-nan-steps 2");
  EXPECT_EQ(once.status, 0) << once.output;
  EXPECT_NE(once.output.find("not finite; the update was skipped"), std::string::npos) << once.output;
}

TEST(Train, SigtermSavesALoadableCheckpointAndTheResumedRunIsBitExact) {
  const std::string tmp = vitscuda::testing::temp_dir("train_sigterm");
  const std::string data = prepared_corpus(tmp);
  const std::string model = tiny_model_with_small_discriminator(tmp + "/model");
  const std::string common = " train --data " + data + " --model " + model +
                             " --batch-size 2 --epochs 1000 --segment-frames 8 --checkpoint-every 0 --log-every 1000";
  const std::string train = binary_path("vitscuda") + common + " --out " + tmp + "/run";
  // Start a long run, wait until it has made progress, then ask it to stop.
  const std::string script = "(" + train + " > " + tmp + "/log.txt 2>&1 & pid=$!; " + "for i in $(seq 600); do [ -s " +
                             tmp + "/run/metrics.jsonl ] && break; sleep 0.1; done; sleep 0.5; kill -TERM $pid; " +
                             "wait $pid; echo \"exit=$?\")";
  auto r = run_command("bash -c '" + script + "'");
  EXPECT_NE(r.output.find("exit=130"), std::string::npos) << r.output << slurp(tmp + "/log.txt");
  const std::string log = slurp(tmp + "/log.txt");
  EXPECT_NE(log.find("terminated (SIGTERM)"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(tmp + "/run/final_model")) << "an interrupted run has no final model";

  // The checkpoint it wrote verifies on its own, holds the state of the last update, and is the
  // one --resume picks.
  io::CheckpointScan scan = io::latest_valid_checkpoint(tmp + "/run/checkpoints", nullptr);
  ASSERT_TRUE(scan.latest) << log;
  EXPECT_TRUE(scan.skipped.empty()) << scan.skipped[0].path << ": " << scan.skipped[0].reason;
  const io::CheckpointInfo ck = io::verify_checkpoint(scan.latest->path);
  const int64_t stopped_at = ck.step;
  ASSERT_GE(stopped_at, 1);
  EXPECT_NE(log.find("checkpoint (terminated (SIGTERM)): " + ck.path), std::string::npos) << log;
  EXPECT_EQ(io::read_trainer_state(ck.path_of(io::kTrainerStateFileName)).step, stopped_at);
  EXPECT_EQ(step_losses(tmp + "/run/metrics.jsonl").back().first, stopped_at);

  // Two more updates after resuming give exactly what an uninterrupted run of that length gives.
  const std::string until = " --max-steps " + std::to_string(stopped_at + 2);
  auto resumed = run_command(train + until + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from " + ck.path + ": step " + std::to_string(stopped_at)), std::string::npos)
      << resumed.output;
  auto straight = run_command(binary_path("vitscuda") + common + until + " --out " + tmp + "/straight");
  ASSERT_EQ(straight.status, 0) << straight.output;
  EXPECT_TRUE(slurp(tmp + "/run/final_model/model.safetensors") == slurp(tmp + "/straight/final_model/model.safetensors"))
      << "the run resumed after SIGTERM must end with the parameters of an uninterrupted one";
  EXPECT_EQ(step_losses(tmp + "/run/metrics.jsonl"), step_losses(tmp + "/straight/metrics.jsonl"));
}

// The vae objective through the command: every term in the metrics, finite; its loss weights printed;
// a resumed run bit-exact; a checkpoint of one objective refused by another, by name.
TEST(Train, VaeObjectiveLogsEveryTermAndResumesBitExact) {
  const std::string tmp = vitscuda::testing::temp_dir("train_vae");
  const std::string data = prepared_corpus(tmp);
  const std::string common = " train --objective vae --data " + data + " --model " + kModel +
                             " --epochs 2 --batch-size 4 --segment-frames 8 --lr 1e-3 --seed 9 --log-every 100"
                             " --checkpoint-every 0 --eval-every 3 --c-kl 2";
  auto full = run_command(binary_path("vitscuda") + common + " --out " + tmp + "/full");
  ASSERT_EQ(full.status, 0) << full.output;
  EXPECT_NE(full.output.find("objective vae: loss = 35 * mel + 2 * kl + 1 * dur"), std::string::npos) << full.output;
  int steps = 0, evaluations = 0;
  for (const auto& m : read_metrics(tmp + "/full/metrics.jsonl")) {
    const bool eval = m.contains("eval_loss");
    const std::string prefix = eval ? "eval_loss_" : "loss_";
    if (!eval && !m.contains("loss")) continue;
    (eval ? evaluations : steps) += 1;
    double weighted = 0;
    for (const char* term : {"mel", "kl", "dur"}) {
      ASSERT_TRUE(m.contains(prefix + term)) << m.dump();
      const double v = m[prefix + term].get<double>();
      EXPECT_TRUE(std::isfinite(v)) << m.dump();
      weighted += (std::string(term) == "mel" ? 35.0 : std::string(term) == "kl" ? 2.0 : 1.0) * v;
    }
    const double total = m[eval ? "eval_loss" : "loss"].get<double>();
    EXPECT_NEAR(total, weighted, 1e-4 * std::max(1.0, std::fabs(total))) << "the total is the weighted sum: " << m.dump();
  }
  EXPECT_EQ(steps, 6) << "12 utterances (11 for training), batch 4, 2 epochs";
  EXPECT_GE(evaluations, 2);

  auto part = run_command(binary_path("vitscuda") + common + " --out " + tmp + "/resumed --max-steps 4");
  ASSERT_EQ(part.status, 0) << part.output;
  auto other = run_command(binary_path("vitscuda") + " train --objective mel --data " + data + " --model " + kModel +
                           " --epochs 2 --batch-size 4 --segment-frames 8 --seed 9 --out " + tmp + "/resumed --resume");
  EXPECT_EQ(other.status, 1) << other.output;
  EXPECT_NE(other.output.find("was trained with --objective vae, not mel"), std::string::npos) << other.output;
  auto rest = run_command(binary_path("vitscuda") + common + " --out " + tmp + "/resumed --resume");
  ASSERT_EQ(rest.status, 0) << rest.output;
  EXPECT_TRUE(slurp(tmp + "/full/final_model/model.safetensors") == slurp(tmp + "/resumed/final_model/model.safetensors"))
      << "a resumed vae run must end with the same parameters as an uninterrupted one";
  EXPECT_EQ(step_losses(tmp + "/full/metrics.jsonl"), step_losses(tmp + "/resumed/metrics.jsonl"));
}


// The full objective through the command: every term logged and finite, the total the generator's weighted
// loss, its weights and the discriminator's origin printed; checkpoints and the final model carry the
// discriminator and both optimizers (verify checks them); a resumed run is bit-exact, discriminator included;
// a damaged discriminator in a checkpoint is refused by name.
TEST(Train, FullObjectiveTrainsTheDiscriminatorAndResumesBitExact) {
  const std::string tmp = vitscuda::testing::temp_dir("train_full");
  const std::string data = prepared_corpus(tmp);
  const std::string model = tiny_model_with_small_discriminator(tmp + "/model");
  const std::string common = " train --objective full --data " + data + " --model " + model +
                             " --epochs 2 --batch-size 4 --segment-frames 8 --lr 1e-3 --seed 9 --log-every 100"
                             " --checkpoint-every 0 --eval-every 3 --c-fm 2 --disc-warmup-steps 2";
  auto full = run_command(binary_path("vitscuda") + common + " --out " + tmp + "/full");
  ASSERT_EQ(full.status, 0) << full.output;
  EXPECT_NE(full.output.find("objective full: loss = 35 * mel + 1.5 * kl + 1 * dur + 1 * gen + 2 * fm"),
            std::string::npos) << full.output;
  EXPECT_NE(full.output.find("discriminator: 3 * disc (--c-disc), 6 sub-discriminators"), std::string::npos)
      << full.output;
  EXPECT_NE(full.output.find("initialised (the model directory has no discriminator.safetensors)"), std::string::npos)
      << full.output;
  EXPECT_NE(full.output.find("both AdamW betas (0.8, 0.99)"), std::string::npos) << full.output;
  int steps = 0, evaluations = 0;
  for (const auto& m : read_metrics(tmp + "/full/metrics.jsonl")) {
    const bool eval = m.contains("eval_loss");
    const std::string prefix = eval ? "eval_loss_" : "loss_";
    if (!eval && !m.contains("loss")) continue;
    (eval ? evaluations : steps) += 1;
    std::map<std::string, double> v;
    for (const char* term : {"mel", "kl", "dur", "gen", "fm", "disc", "disc_real", "disc_fake"}) {
      ASSERT_TRUE(m.contains(prefix + term)) << m.dump();
      v[term] = m[prefix + term].get<double>();
      EXPECT_TRUE(std::isfinite(v[term])) << m.dump();
    }
    EXPECT_GT(v["disc"], 0) << m.dump();
    EXPECT_GT(v["fm"], 0) << m.dump();
    // The first two updates are the discriminator's warm-up: the adversarial terms carry no weight yet (an
    // evaluation at step s follows s discriminator updates).
    const int64_t step = m["step"].get<int64_t>();
    const bool warming_up = eval ? step < 2 : step <= 2;
    double weighted = 35 * v["mel"] + 1.5 * v["kl"] + v["dur"];
    if (!warming_up) weighted += v["gen"] + 2 * v["fm"];
    const double total = m[eval ? "eval_loss" : "loss"].get<double>();
    EXPECT_NEAR(total, weighted, 1e-4 * std::max(1.0, std::fabs(total)))
        << "the generator's weighted loss: " << m.dump();
  }
  EXPECT_EQ(steps, 6) << "12 utterances (11 for training), batch 4, 2 epochs";
  EXPECT_GE(evaluations, 2);
  const std::string final_ck = tmp + "/full/checkpoints/step-6";
  for (const char* f : {"discriminator.safetensors", "disc_optimizer.safetensors", "optimizer.safetensors"}) {
    EXPECT_TRUE(fs::exists(final_ck + "/" + f)) << f;
    EXPECT_NE(slurp(final_ck + "/MANIFEST.json").find(f), std::string::npos) << f << " is in the manifest";
  }
  EXPECT_TRUE(slurp(final_ck + "/discriminator.safetensors") ==
              slurp(tmp + "/full/final_model/discriminator.safetensors"))
      << "the final model directory carries the trained discriminator";
  auto verified = run_command(binary_path("vitscuda") + " verify " + final_ck);
  EXPECT_EQ(verified.status, 0) << verified.output;

  auto part = run_command(binary_path("vitscuda") + common + " --out " + tmp + "/resumed --max-steps 4");
  ASSERT_EQ(part.status, 0) << part.output;
  auto other = run_command(binary_path("vitscuda") + " train --objective vae --data " + data + " --model " + model +
                           " --epochs 2 --batch-size 4 --segment-frames 8 --seed 9 --out " + tmp + "/resumed --resume");
  EXPECT_EQ(other.status, 1) << other.output;
  EXPECT_NE(other.output.find("was trained with --objective full, not vae"), std::string::npos) << other.output;
  auto rest = run_command(binary_path("vitscuda") + common + " --out " + tmp + "/resumed --resume");
  ASSERT_EQ(rest.status, 0) << rest.output;
  EXPECT_TRUE(slurp(tmp + "/full/final_model/model.safetensors") ==
              slurp(tmp + "/resumed/final_model/model.safetensors"))
      << "a resumed full run must end with the same generator as an uninterrupted one";
  EXPECT_TRUE(slurp(tmp + "/full/final_model/discriminator.safetensors") ==
              slurp(tmp + "/resumed/final_model/discriminator.safetensors"))
      << "... and the same discriminator";
  EXPECT_EQ(step_losses(tmp + "/full/metrics.jsonl"), step_losses(tmp + "/resumed/metrics.jsonl"));

  // The final model continues a full run with its discriminator, no warm-up.
  auto again = run_command(binary_path("vitscuda") + " train --objective full --data " + data + " --model " + tmp +
                           "/full/final_model --batch-size 4 --segment-frames 8 --seed 9 --max-steps 1 --out " + tmp +
                           "/again");
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("read from " + tmp + "/full/final_model/discriminator.safetensors"), std::string::npos)
      << again.output;
  EXPECT_NE(again.output.find("after 0 discriminator warm-up steps"), std::string::npos) << again.output;

  // A checkpoint whose discriminator does not fit the config: the tensor is named.
  nlohmann::json config = nlohmann::json::parse(slurp(model + "/config.json"));
  config["discriminator_period_channels"] = {1, 4, 8, 16, 32};
  std::ofstream(model + "/config.json") << config.dump(2) << "\n";
  auto mismatched = run_command(binary_path("vitscuda") + common + " --out " + tmp + "/resumed --resume");
  EXPECT_EQ(mismatched.status, 1) << mismatched.output;
  EXPECT_NE(mismatched.output.find("discriminator.discriminators.1.convs.3"), std::string::npos) << mismatched.output;
}

// selftest --objective full on a model directory with its discriminator: the generator's full loss and every
// generator gradient, then whole full updates (adversarial terms on from the first) until the loss falls.
TEST(Train, SelftestChecksTheFullObjectiveWithTheModelDirectorysDiscriminator) {
  const std::string tmp = vitscuda::testing::temp_dir("selftest_full");
  const std::string model = tiny_model_with_small_discriminator(tmp + "/model");
  fs::copy_file(vitscuda::testing::data_path("golden/full/discriminator.safetensors"),
                model + "/discriminator.safetensors");
  auto r = run_command(binary_path("vitscuda") + " selftest --objective full --model " + model +
                       " --seconds 0.5 --steps 5 --seed 1 --device cpu");
  ASSERT_EQ(r.status, 0) << r.output;
  size_t at = 0;
  for (const std::string check :
       {std::string("objective full: loss = 35 * mel + 1.5 * kl + 1 * dur + 1 * gen + 1 * fm"),
        "read from " + model + "/discriminator.safetensors", std::string("after 0 discriminator warm-up steps"),
        std::string("[PASS] loss finite and non-zero"), std::string("gen "), std::string("fm "),
        std::string("[PASS] gradients: 250/250 trainable tensors finite and non-zero"),
        std::string("[PASS] optimizer step changed"), std::string("[PASS] loss falls over 5 steps"),
        std::string("selftest passed")}) {
    at = r.output.find(check, at);
    ASSERT_NE(at, std::string::npos) << check << " (in this order)\n" << r.output;
  }
  EXPECT_EQ(r.output.find("[FAIL]"), std::string::npos) << r.output;
}

TEST(Train, AnUnknownObjectiveIsRefusedNamingTheValidOnesBeforeAnythingIsLoaded) {
  const std::string tmp = vitscuda::testing::temp_dir("train_unknown_objective");
  auto r = run_command(binary_path("vitscuda") + " train --data " + tmp + "/no_data --model " + kModel + " --out " +
                       tmp + "/run --objective vits");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("unknown training objective \"vits\"; valid objectives: full, vae, mel"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(tmp + "/run")) << "nothing is created for a run that cannot start";
}

// The statuses the failure-policy, SIGTERM and success tests above see, from one mapping.
TEST(TrainExitStatus, EachTrainingOutcomeHasItsExitStatus) {
  EXPECT_EQ(cli::exit_status_of(model::TrainingOutcome::Done), 0);
  EXPECT_EQ(cli::exit_status_of(model::TrainingOutcome::StoppedByFailurePolicy), 1);
  EXPECT_EQ(cli::exit_status_of(model::TrainingOutcome::Interrupted), 130);
}
