// The training loop is objective-agnostic: TrainingRun drives an objective it has never heard of
// (two named loss terms, its own checkpointed state) through steps, evaluation, checkpoints, resume,
// the failure policy and a stop signal; and the objective factory knows its names.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/hf_config.h"
#include "model/trainer.h"
#include "model/training_run.h"
#include "support/test_support.h"

using namespace vitscuda;
namespace fs = std::filesystem;

namespace {

const std::string& tiny_model() {
  static const std::string path = vitscuda::testing::data_path("golden/tiny_sdp");
  return path;
}

// DIR/train.vcds with `train_items` utterances and DIR/eval.vcds with 2, valid for the tiny model.
std::string write_dataset(const std::string& dir, int train_items) {
  const io::VitsConfig c = io::VitsConfig::from_file(tiny_model() + "/config.json");
  fs::create_directories(dir);
  for (const char* name : {"train.vcds", "eval.vcds"}) {
    io::DatasetWriter w(dir + "/" + name, c.sampling_rate);
    const int items = std::string(name) == "train.vcds" ? train_items : 2;
    for (int i = 0; i < items; ++i) {
      std::vector<int32_t> ids;
      for (int t = 0; t < 5 + i; ++t) ids.push_back(1 + (3 * t + i) % (c.vocab_size - 1));
      std::vector<float> wave(static_cast<size_t>(c.total_upsample() * (20 + 2 * i)));
      for (size_t k = 0; k < wave.size(); ++k) wave[k] = 0.3f * static_cast<float>(std::sin(0.05 * (i + 1) * k));
      w.add("utt" + std::to_string(i), -1, ids.data(), ids.size(), wave.data(), wave.size());
    }
    w.finish();
  }
  return dir;
}

// What the fake objective was asked and told, kept outside it (the run owns the objective).
struct FakeLog {
  int64_t items_trained = 0;
  int evaluations = 0;
  int64_t restored_updates = -1;  // from load_state
  uint64_t restored_rng_offset = 0;
};

// An objective with nothing in common with the mel one: two loss terms that fall with its update
// count, its own state file in the checkpoint, and a stop signal raised from inside a step.
class FakeObjective : public model::TrainingObjective {
 public:
  static constexpr const char* kStateFile = "fake_objective.json";
  FakeObjective(FakeLog& log, int64_t raise_sigterm_at_update) : log_(log), raise_at_(raise_sigterm_at_update) {}

  std::string name() const override { return "fake"; }
  std::vector<std::string> loss_terms() const override { return {"first", "second"}; }
  std::string describe_schedule() const override { return "fake schedule"; }
  std::string describe_loss() const override { return "first + second"; }
  model::StepStats step(const std::vector<std::vector<model::TrainingItem>>& micro_batches, int64_t) override {
    ++updates_;
    model::StepStats st;
    for (const auto& b : micro_batches) st.items += static_cast<int64_t>(b.size());
    log_.items_trained += st.items;
    st.terms = {{"first", first_at(updates_)}, {"second", second_at(updates_)}};
    st.loss = st.terms[0].value + st.terms[1].value;
    st.finite = !poisoned_;
    poisoned_ = false;
    st.learning_rate = 0.5;
    st.grad_norm = 1.0;
    rng_offset_ += 4;
    if (updates_ == raise_at_) std::raise(SIGTERM);
    return st;
  }
  void poison_next_step() override { poisoned_ = true; }
  model::LossValues evaluate(const std::vector<model::TrainingItem>& batch) override {
    ++log_.evaluations;
    return {3.0 * static_cast<double>(batch.size()), {{"first", 1.0 * batch.size()}, {"second", 2.0 * batch.size()}}};
  }
  void save_state(io::CheckpointWriter& checkpoint) override {
    checkpoint.write_json(kStateFile, {{"updates", updates_}});
  }
  void load_state(const io::CheckpointInfo& checkpoint) override {
    std::ifstream in(checkpoint.path_of(kStateFile));
    updates_ = nlohmann::json::parse(in).at("updates").get<int64_t>();
    log_.restored_updates = updates_;
  }
  uint64_t rng_offset() const override { return rng_offset_; }
  void set_rng_offset(uint64_t offset) override {
    rng_offset_ = offset;
    log_.restored_rng_offset = offset;
  }

  static double first_at(int64_t update) { return 1.0 / static_cast<double>(update + 1); }
  static double second_at(int64_t update) { return 2.0 / static_cast<double>(update + 1); }

 private:
  FakeLog& log_;
  int64_t raise_at_;
  int64_t updates_ = 0;
  uint64_t rng_offset_ = 0;
  bool poisoned_ = false;
};

model::TrainingObjectiveFactory fake_factory(FakeLog& log, int64_t raise_sigterm_at_update = -1) {
  return [&log, raise_sigterm_at_update](model::VitsModel&, const model::TrainerOptions&, uint64_t) {
    return std::make_unique<FakeObjective>(log, raise_sigterm_at_update);
  };
}

model::TrainRunOptions run_options(const std::string& dir, int train_items) {
  model::TrainRunOptions o;
  o.data_dir = write_dataset(dir + "/data", train_items);
  o.model_dir = tiny_model();
  o.out_dir = dir + "/run";
  o.batch_size = 2;
  o.log_every = 1;
  return o;
}

std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(TrainingRun, DrivesAnObjectiveItDoesNotKnowAndLogsItsNamedTerms) {
  const std::string dir = vitscuda::testing::temp_dir("training_run_fake");
  model::TrainRunOptions o = run_options(dir, 6);
  o.max_steps = 3;
  o.eval_every = 3;
  o.checkpoint_every = 2;
  FakeLog log;
  EXPECT_EQ(model::TrainingRun(o, fake_factory(log)).run(), model::TrainingOutcome::Done);
  EXPECT_EQ(log.items_trained, 6);  // 3 updates of batch 2
  EXPECT_EQ(log.evaluations, 1);    // at step 3
  std::vector<nlohmann::json> steps, evals;
  for (const nlohmann::json& m : read_metrics(o.out_dir)) (m.contains("eval_loss") ? evals : steps).push_back(m);
  ASSERT_EQ(steps.size(), 3u);
  for (size_t i = 0; i < steps.size(); ++i) {
    const int64_t update = static_cast<int64_t>(i) + 1;
    EXPECT_EQ(steps[i]["step"].get<int64_t>(), update);
    EXPECT_DOUBLE_EQ(steps[i]["loss_first"].get<double>(), FakeObjective::first_at(update));
    EXPECT_DOUBLE_EQ(steps[i]["loss_second"].get<double>(), FakeObjective::second_at(update));
    EXPECT_DOUBLE_EQ(steps[i]["loss"].get<double>(),
                     FakeObjective::first_at(update) + FakeObjective::second_at(update));
  }
  ASSERT_EQ(evals.size(), 1u);
  EXPECT_EQ(evals[0]["step"].get<int64_t>(), 3);
  EXPECT_DOUBLE_EQ(evals[0]["eval_loss"].get<double>(), 6.0);  // 2 eval utterances
  EXPECT_DOUBLE_EQ(evals[0]["eval_loss_first"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(evals[0]["eval_loss_second"].get<double>(), 4.0);
  // The periodic checkpoint (step 2) and the final one (step 3) hold the objective's own state.
  for (int64_t step : {2, 3}) {
    const io::CheckpointInfo ck = io::verify_checkpoint(io::checkpoint_path(o.out_dir + "/checkpoints", step));
    EXPECT_TRUE(ck.has_file(FakeObjective::kStateFile)) << ck.path;
    EXPECT_TRUE(ck.has_file(io::kModelFileName)) << ck.path;
    EXPECT_FALSE(ck.has_file(io::kOptimizerFileName)) << "the run wrote an optimizer state the objective did not";
    const io::TrainerState state = io::read_trainer_state(ck.path_of(io::kTrainerStateFileName));
    EXPECT_EQ(state.rng_offset, static_cast<uint64_t>(4 * step));
  }
  EXPECT_TRUE(fs::exists(o.out_dir + "/final_model/config.json"));

  // A resume hands the objective its state and random stream back, and continues the step count.
  o.resume = true;
  o.max_steps = 4;
  FakeLog resumed;
  EXPECT_EQ(model::TrainingRun(o, fake_factory(resumed)).run(), model::TrainingOutcome::Done);
  EXPECT_EQ(resumed.restored_updates, 3);
  EXPECT_EQ(resumed.restored_rng_offset, 12u);
  EXPECT_EQ(resumed.items_trained, 2);
  const std::vector<nlohmann::json> after = read_metrics(o.out_dir);
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.back()["step"].get<int64_t>(), 4);
  EXPECT_DOUBLE_EQ(after.back()["loss_first"].get<double>(), FakeObjective::first_at(4));
}

TEST(TrainingRun, NonFiniteLossesOfAnyObjectiveStopThroughTheFailurePolicy) {
  const std::string dir = vitscuda::testing::temp_dir("training_run_fake_nan");
  model::TrainRunOptions o = run_options(dir, 8);
  o.max_bad_steps = 2;
  o.inject_nan_steps = "2,3";
  FakeLog log;
  EXPECT_EQ(model::TrainingRun(o, fake_factory(log)).run(), model::TrainingOutcome::StoppedByFailurePolicy);
  EXPECT_EQ(log.items_trained, 6);  // the update before and the two poisoned ones
  const std::vector<nlohmann::json> metrics = read_metrics(o.out_dir);
  ASSERT_EQ(metrics.size(), 1u) << "skipped updates are not steps";
  EXPECT_FALSE(fs::exists(o.out_dir + "/final_model")) << "a stopped run saves no final model";
}

TEST(TrainingRun, AStopSignalDuringAnyObjectivesStepSavesACheckpointAndInterrupts) {
  const std::string dir = vitscuda::testing::temp_dir("training_run_fake_signal");
  model::TrainRunOptions o = run_options(dir, 8);
  o.checkpoint_every = 100;
  FakeLog log;
  EXPECT_EQ(model::TrainingRun(o, fake_factory(log, 2)).run(), model::TrainingOutcome::Interrupted);
  EXPECT_EQ(log.items_trained, 4);
  const io::CheckpointScan scan = io::latest_valid_checkpoint(o.out_dir + "/checkpoints", nullptr);
  ASSERT_TRUE(scan.latest);
  EXPECT_EQ(scan.latest->step, 2);
  EXPECT_TRUE(scan.latest->has_file(FakeObjective::kStateFile));
  // The run restored the handlers it replaced: this process would otherwise ignore SIGTERM.
  struct sigaction current {};
  sigaction(SIGTERM, nullptr, &current);
  EXPECT_EQ(current.sa_handler, SIG_DFL);
}

// checkpoint_every 0: no periodic checkpoint, only the final one; eval_every 0: no evaluation.
TEST(TrainingRun, ZeroCheckpointAndEvaluationIntervalsMeanOnlyTheFinalCheckpointAndNoEvaluation) {
  const std::string dir = vitscuda::testing::temp_dir("training_run_fake_zero_intervals");
  model::TrainRunOptions o = run_options(dir, 4);
  o.epochs = 3;
  o.checkpoint_every = 0;
  o.eval_every = 0;
  o.keep_checkpoints = 10;
  FakeLog log;
  EXPECT_EQ(model::TrainingRun(o, fake_factory(log)).run(), model::TrainingOutcome::Done);
  EXPECT_EQ(log.items_trained, 12);
  EXPECT_EQ(log.evaluations, 0);
  std::vector<std::string> checkpoints;
  for (const auto& entry : fs::directory_iterator(o.out_dir + "/checkpoints"))
    checkpoints.push_back(entry.path().filename().string());
  EXPECT_EQ(checkpoints, std::vector<std::string>{"step-6"});
}

TEST(TrainingObjectives, SelectedByNameAndAnUnknownNameListsTheValidOnes) {
  EXPECT_EQ(model::training_objective_names(), (std::vector<std::string>{"full", "vae", "mel"}));
  EXPECT_EQ(model::require_training_objective_name("mel"), "mel");
  try {
    model::require_training_objective_name("vits");
    FAIL() << "an unknown objective was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown training objective \"vits\"; valid objectives: full, vae, mel"),
              std::string::npos)
        << e.what();
  }
  model::LoadedModel loaded = model::load_model_dir(tiny_model());
  EXPECT_THROW(model::make_training_objective("vits", *loaded.model, {}, 0), Error);
  std::unique_ptr<model::TrainingObjective> mel = model::make_training_objective("mel", *loaded.model, {}, 0);
  ASSERT_TRUE(mel);
  EXPECT_EQ(mel->name(), "mel");
  EXPECT_EQ(mel->loss_terms(), std::vector<std::string>{"mel"});
  model::LoadedModel other = model::load_model_dir(tiny_model());
  std::unique_ptr<model::TrainingObjective> vae = model::make_training_objective("vae", *other.model, {}, 0);
  ASSERT_TRUE(vae);
  EXPECT_EQ(vae->name(), "vae");
  EXPECT_EQ(vae->loss_terms(), (std::vector<std::string>{"mel", "kl", "dur"}));
}

// The mel objective's single term is its whole loss, in a step and in an evaluation.
TEST(TrainingObjectives, TheMelObjectiveReportsItsLossAsTheTermMel) {
  model::LoadedModel loaded = model::load_model_dir(tiny_model());
  const io::VitsConfig& c = loaded.model->config();
  std::unique_ptr<model::TrainingObjective> mel = model::make_training_objective("mel", *loaded.model, {}, 3);
  model::TrainingItem item;
  for (int t = 0; t < 9; ++t) item.ids.push_back(1 + (5 * t) % (c.vocab_size - 1));
  item.wave.resize(static_cast<size_t>(c.total_upsample() * 30));
  for (size_t k = 0; k < item.wave.size(); ++k) item.wave[k] = 0.3f * static_cast<float>(std::sin(0.07 * k));
  const model::StepStats st = mel->step({{item}}, 0);
  ASSERT_TRUE(st.finite);
  ASSERT_EQ(st.terms.size(), 1u);
  EXPECT_EQ(st.terms[0].name, "mel");
  EXPECT_EQ(st.terms[0].value, st.loss);
  EXPECT_GT(st.loss, 0.0);
  const model::LossValues ev = mel->evaluate({item});
  ASSERT_EQ(ev.terms.size(), 1u);
  EXPECT_EQ(ev.terms[0].name, "mel");
  EXPECT_EQ(ev.terms[0].value, ev.total);
  EXPECT_GT(ev.total, 0.0);
}

}  // namespace
