// `vitscuda selftest`: one training sample end to end, every stage checked and printed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "common/error.h"
#include "engine/autograd.h"
#include "engine/device_allocator.h"
#include "model/model_dir.h"
#include "model/synthetic_speech.h"
#include "model/trainer.h"

namespace vitscuda::cli {

namespace {

struct SelftestArgs {
  std::string model_dir, config_path;
  std::string objective = "mel";
  DeviceOptions device;
  double seconds = 2.0, learning_rate = 2e-4;
  int segment_frames = -1, steps = 20;  // -1: the objective's default (mel: whole utterance; vae, full: 32)
  bool recompute_decoder = false;
  uint64_t seed = 0;
};

int report(bool ok, const std::string& what) {
  std::printf("[%s] %s\n", ok ? "PASS" : "FAIL", what.c_str());
  std::fflush(stdout);
  return ok ? 0 : 1;
}

std::string mb(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

// Memory figures: the device allocator's high-water mark on CUDA, the host's on the CPU.
void reset_peak_memory(Device device) {
  if (device == Device::CUDA)
    DeviceAllocator::instance().reset_peak();
  else
    reset_cpu_peak_memory();
}

size_t peak_memory_bytes(Device device) {
  return device == Device::CUDA ? DeviceAllocator::instance().stats().peak_live_bytes : cpu_memory_stats().peak_bytes;
}

bool all_finite(const Tensor& t) {
  const std::vector<float> d = t.to_float_vector();
  return std::all_of(d.begin(), d.end(), [](float v) { return std::isfinite(v); });
}

struct SelftestModel {
  std::unique_ptr<model::VitsModel> model;
  io::Tokenizer tokenizer;
  std::string source;  // what the model came from, in words
};

// --model DIR, or a random initialisation of --config.
SelftestModel load_selftest_model(const SelftestArgs& a) {
  SelftestModel m;
  if (!a.model_dir.empty()) {
    model::LoadedModel loaded = model::load_model_dir(a.model_dir);
    m.model = std::move(loaded.model);
    m.tokenizer = loaded.tokenizer;
    m.source = a.model_dir;
  } else {
    VC_CHECK(!a.config_path.empty(), "selftest needs --model DIR or --config config.json (random initialisation)");
    m.model = std::make_unique<model::VitsModel>(io::VitsConfig::from_file(a.config_path));
    m.model->initialize(a.seed);
    m.tokenizer = io::Tokenizer::from_dir(std::filesystem::path(a.config_path).parent_path().string());
    m.source = a.config_path + " (random initialisation, seed " + std::to_string(a.seed) + ")";
  }
  return m;
}

// The checks, in order; each prints its [PASS]/[FAIL] line and counts failures.
class Selftest {
 public:
  Selftest(const SelftestArgs& a, Device device, SelftestModel loaded)
      : a_(a), device_(device), loaded_(std::move(loaded)), vits_(*loaded_.model) {
    vits_.to(device_);
    std::printf("vitscuda selftest: %s, %lld parameters\n", loaded_.source.c_str(),
                static_cast<long long>(vits_.params().count()));
    batch_ = {synthetic_item()};
    options_.learning_rate = a.learning_rate;
    options_.step.segment_frames = a.segment_frames >= 0 ? a.segment_frames : (a.objective == "mel" ? 0 : 32);
    // full: the discriminator from the model directory when it has one; its adversarial terms reach the
    // generator from the first step, so the steps below check the whole update.
    options_.model_dir = a.model_dir;
    options_.disc_warmup_steps = 0;
    options_.step.recompute_decoder = a.recompute_decoder;
    trainer_ = model::make_generator_trainer(a.objective, vits_, options_, a.seed);
    std::printf("objective %s: loss = %s\n", trainer_->name().c_str(), trainer_->describe_loss().c_str());
  }

  // 1-4: one recorded forward and its backward, inspected.
  void check_forward_and_gradients() {
    const io::VitsConfig& c = vits_.config();
    ParameterStore& store = vits_.params();
    store.zero_grad();
    autograd::Tape tape;
    Rng rng(a_.seed + 2);
    model::ForwardLoss r;
    reset_peak_memory(device_);
    const auto t0 = std::chrono::steady_clock::now();
    {
      autograd::RecordingScope recording(tape);
      r = trainer_->forward_once(batch_, rng);
    }
    const double forward_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const size_t tape_nodes = tape.size();
    const int64_t frames = r.target_frames[0];
    const int64_t decoded = r.generated_logmel.dim(2);
    failures_ += report(r.generated_logmel.defined() && all_finite(r.generated_logmel),
                        "forward gives a waveform: " + std::to_string(decoded * c.total_upsample()) + " samples (" +
                            std::to_string(decoded) + " of the target's " + std::to_string(frames) + " frames)");
    failures_ += report(r.generated_logmel.dim(1) == trainer_->mel().n_mels() && all_finite(r.target_logmel),
                        "mel computed: " + std::to_string(r.generated_logmel.dim(1)) + " mel bins x " +
                            std::to_string(r.generated_logmel.dim(2)) + " frames, both sides finite");
    const double loss = r.total.to_float_vector()[0];
    std::string terms;
    bool terms_finite = true;
    for (const auto& term : r.terms) {
      const double v = term.second.to_float_vector()[0];
      terms_finite &= std::isfinite(v);
      char t[64];
      std::snprintf(t, sizeof t, "%s%s %.5f", terms.empty() ? "" : ", ", term.first.c_str(), v);
      terms += t;
    }
    char buf[256];
    std::snprintf(buf, sizeof buf, "loss finite and non-zero: %.5f (%s)", loss, terms.c_str());
    failures_ += report(std::isfinite(loss) && loss != 0.0 && terms_finite, buf);
    const auto tb = std::chrono::steady_clock::now();
    tape.backward(r.total);
    const double backward_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tb).count();
    check_gradients();
    std::printf("       forward %.3f s (%zu tape nodes), backward %.3f s, peak tensor memory %s\n", forward_s,
                tape_nodes, backward_s, mb(peak_memory_bytes(device_)).c_str());
  }

  // 5: an optimizer step changes the parameters.
  void check_optimizer_step() {
    const std::vector<float> before = vits_.params().flat().to_float_vector();
    first_ = trainer_->step({batch_}, 0);
    const std::vector<float> after = vits_.params().flat().to_float_vector();
    int64_t changed = 0;
    double max_delta = 0;
    for (size_t i = 0; i < before.size(); ++i) {
      const double d = std::fabs(static_cast<double>(after[i]) - before[i]);
      if (d > 0) ++changed;
      max_delta = std::max(max_delta, d);
    }
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "optimizer step changed %lld of %lld trainable parameters (max |change| %.2e, lr %.1e)",
                  static_cast<long long>(changed), static_cast<long long>(vits_.params().trainable_count()),
                  max_delta, first_.learning_rate);
    failures_ += report(changed > 0 && first_.finite, buf);
  }

  // 6: the loss on that sample falls (the first of the steps is check 5's).
  void check_loss_falls() {
    double initial = first_.loss, last = first_.loss;
    double total_s = first_.seconds;
    size_t peak = first_.peak_bytes;
    for (int s = 1; s < a_.steps; ++s) {
      model::StepStats st = trainer_->step({batch_}, 0);
      last = st.loss;
      total_s += st.seconds;
      peak = std::max(peak, st.peak_bytes);
    }
    char buf[256];
    std::snprintf(buf, sizeof buf, "loss falls over %d steps: %.5f -> %.5f", a_.steps, initial, last);
    failures_ += report(last < initial, buf);
    std::printf("step time %.3f s (mean of %d), peak tensor memory %s; batch 1, %.2f s of audio, %s\n",
                total_s / a_.steps, a_.steps, mb(peak).c_str(), a_.seconds,
                options_.step.segment_frames > 0 ? (std::to_string(options_.step.segment_frames) + "-frame segment").c_str()
                                      : "whole utterance");
  }

  int failures() const { return failures_; }

 private:
  model::TrainingItem synthetic_item() const {
    Rng data_rng(a_.seed + 1);
    model::TrainingItem item;
    item.ids = loaded_.tokenizer.encode("the quick brown fox jumps over the lazy dog").ids;
    item.wave = model::synthetic_speech(vits_.config().sampling_rate, a_.seconds, data_rng);
    if (vits_.config().num_speakers > 1) item.speaker_id = 0;
    return item;
  }

  // 4: every trainable parameter got a finite, non-zero gradient.
  void check_gradients() {
    const ParameterStore& store = vits_.params();
    int trainable = 0, good = 0;
    std::vector<std::string> bad, structural;
    for (const ParameterInfo& p : store.params()) {
      if (!store.trainable(p.name)) continue;
      ++trainable;
      const std::vector<float> g = store.grad(p.name).to_float_vector();
      double norm = 0;
      bool finite = true;
      for (const float value : g) {
        const double v = value;
        finite &= std::isfinite(v);
        norm += v * v;
      }
      // A key projection's bias shifts every logit of a query equally: softmax cancels it exactly.
      const bool shift_invariant = p.name.find("attention.k_proj.bias") != std::string::npos;
      if (shift_invariant) {
        structural.push_back(p.name);
        if (finite) ++good;
      } else if (finite && norm > 0) {
        ++good;
      } else {
        bad.push_back(p.name + (finite ? " (zero)" : " (not finite)"));
      }
    }
    std::string what = "gradients: " + std::to_string(good) + "/" + std::to_string(trainable) +
                       " trainable tensors finite and non-zero";
    if (!structural.empty())
      what += " (" + std::to_string(structural.size()) + " attention key biases are zero by softmax shift invariance)";
    for (const std::string& n : bad) what += "\n       no gradient: " + n;
    failures_ += report(bad.empty(), what);
  }

  const SelftestArgs& a_;
  const Device device_;
  SelftestModel loaded_;
  model::VitsModel& vits_;
  std::vector<model::TrainingItem> batch_;
  model::TrainerOptions options_;
  std::unique_ptr<model::GeneratorTrainer> trainer_;
  model::StepStats first_;
  int failures_ = 0;
};

void run_selftest(const SelftestArgs& a) {
  const Device device = resolve_device(a.device, "selftest");
  Selftest test(a, device, load_selftest_model(a));
  test.check_forward_and_gradients();
  test.check_optimizer_step();
  test.check_loss_falls();
  if (test.failures()) VC_FAIL("selftest: " << test.failures() << " check(s) failed");
  std::printf("selftest passed\n");
}

}  // namespace

void register_selftest(CLI::App& app) {
  auto args = std::make_shared<SelftestArgs>();
  CLI::App* cmd = app.add_subcommand("selftest", "Check one training step end to end on a synthetic sample");
  cmd->add_option("--model", args->model_dir, "Model directory (default: a random model from --config)");
  cmd->add_option("--config", args->config_path, "config.json for a randomly initialised model (vocab.json beside it)");
  cmd->add_option("--seconds", args->seconds, "Length of the synthetic target (default 2)");
  cmd->add_option("--objective", args->objective, "The training objective to check: full, vae or mel (default mel)");
  cmd->add_option("--segment-frames", args->segment_frames,
                  "Decode a random window of this many frames (0: whole, the mel default; vae, full: 32 by default)");
  cmd->add_flag("--recompute-decoder", args->recompute_decoder, "Recompute decoder activations in the backward");
  cmd->add_option("--steps", args->steps, "Steps for the falling-loss check (default 20)");
  cmd->add_option("--lr", args->learning_rate, "Learning rate (default 2e-4)");
  cmd->add_option("--seed", args->seed, "Seed");
  add_device_options(cmd, args->device);
  cmd->callback([args] { run_selftest(*args); });
}

}  // namespace vitscuda::cli
