// bench_train: a training objective's step (--objective mel, the default, vae or full) on a CUDA device,
// at the two shapes the 8 GB target trains with, each with and without recomputing the decoder's residual
// blocks, under an allocator budget (default 7.5 GiB, an 8 GB card's share):
//   b4_whole_10s     batch 4, 10-second utterances decoded whole (segment_frames 0)
//   b16_seg32_10s    batch 16, 10-second utterances, a random 32-frame window decoded per item
//   ..._recompute    the same with TrainStepOptions::recompute_decoder
// (vae and full: the segment settings only, their step decodes a window of the posterior's latents)
// plus two parts of the step alone: AdamW over the model's flat buffers (achieved GB/s against the
// device's peak) and the log-mel forward + backward on batch 4 x 10 s.
//
// Model: the given config (default: mms-tts-eng's architecture), transformers' random
// initialisation (VitsModel::initialize). Data: speech-like synthetic targets (the same generator as
// `vitscuda selftest`), one sentence cycled to about --tokens-per-second tokens per second of audio.
// The target log-mels are computed once before timing (they do not depend on the model; the
// training loop computes them on the host inside every step today, and the time that costs per
// batch is reported separately as host_target_logmel_s). bench/reference/train_step.py runs the same
// step in PyTorch on transformers' VitsModel; bench/compare_training.py puts the two side by side.
//
// Timing: the objective's step reads the loss (and the gradient norm) on the host, but the AdamW update
// is launched after the last such read, so step() can return before the device is done. Every timed
// step is therefore followed by kernels::device_synchronize(); the wall time includes it, and the part
// after step() returned is reported as median_sync_tail_s.
//
// --device cpu runs the same on the CPU (bench/compare_cpu.sh sets it beside train_step.py --device cpu).
//
// An out-of-memory error (the budget, or the device itself) is a result: it is printed and recorded,
// and the next setting runs. Exit status: 0 every selected setting ran or ran out of memory, 1 some
// setting failed otherwise, 2 bad arguments (a --setting that names none of the settings, with the
// list of names), 77 no usable CUDA device (skipped).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "common/error.h"
#include "engine/autograd.h"
#include "engine/device_allocator.h"
#include "engine/optimizer.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "io/hf_config.h"
#include "io/tokenizer.h"
#include "kernels/backend.h"
#include "kernels/device.h"
#include "model/mel.h"
#include "model/synthetic_speech.h"
#include "model/train_step.h"
#include "model/trainer.h"
#include "model/vits.h"

namespace vitscuda::bench {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Where the benchmark runs: CUDA, or the CPU (--device cpu: bench/compare_cpu.sh compares it with
// PyTorch's CPU step; there is no reserved or device memory).
Device g_device = Device::CUDA;

void sync() {
  if (g_device == Device::CUDA) kernels::device_synchronize();
}

// cudaMemGetInfo's used bytes (total - free); 0 on the CPU.
size_t device_used_bytes() {
  if (g_device != Device::CUDA) return 0;
  size_t free_b = 0, total_b = 0;
  kernels::device_memory_info(&free_b, &total_b);
  return total_b - free_b;
}

// The tensor memory high-water marks (the device allocator's, or the host's on the CPU).
DeviceMemoryStats memory_stats() {
  if (g_device == Device::CUDA) return DeviceAllocator::instance().stats();
  DeviceMemoryStats s;
  const MemoryStats m = cpu_memory_stats();
  s.live_bytes = m.live_bytes;
  s.peak_live_bytes = m.peak_bytes;
  return s;
}

void empty_cache() {
  if (g_device == Device::CUDA) DeviceAllocator::instance().empty_cache();
}

bool is_out_of_memory(const std::string& message) {
  for (const char* pattern : {"out of memory", "ALLOC_FAILED", "cudaErrorMemoryAllocation"})
    if (message.find(pattern) != std::string::npos) return true;
  return false;
}

struct Args {
  std::string config_path = "tests/data/mms_tts_eng/config.json", tokenizer_dir, json_path, budget = "7.5G";
  std::string device = "cuda";
  std::string objective = "mel";  // model::training_objective_names(); vae and full need segment settings
  std::string text = "The birch canoe slid on the smooth planks, and the boy glued the sheet to the dark blue background.";
  std::vector<std::string> settings;
  double seconds = 10, tokens_per_second = 15, learning_rate = 2e-4;
  int warmup = 1, steps = 10, adam_reps = 50, logmel_reps = 10;
  uint64_t seed = 0;
  bool quick = false, list = false, targets_in_step = false, exact = false;
};

struct Setting {
  std::string name;
  int batch = 1;
  int segment_frames = 0;
  bool recompute = false;
};

// Names are built from the shapes so that train_step.py, given the same arguments, names its
// settings identically (compare_training.py joins on the name).
std::string setting_name(int batch, int segment_frames, bool recompute, double seconds) {
  std::ostringstream os;
  os << "b" << batch << "_" << (segment_frames > 0 ? "seg" + std::to_string(segment_frames) : std::string("whole")) << "_"
     << seconds << "s" << (recompute ? "_recompute" : "");
  return os.str();
}

// A --setting value selects the names that contain it, or with --exact only the name equal to it.
bool matches(const Args& a, const std::string& pattern, const std::string& name) {
  return a.exact ? pattern == name : name.find(pattern) != std::string::npos;
}

bool selected(const Args& a, const std::string& name) {
  if (a.settings.empty()) return true;
  for (const std::string& s : a.settings)
    if (matches(a, s, name)) return true;
  return false;
}

json device_json(const kernels::DeviceInfo& d) {
  return json{{"name", d.name},
              {"compute_capability", std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor)},
              {"multiprocessors", d.multiprocessors},
              {"total_memory_bytes", d.total_memory},
              {"sm_clock_ghz", d.sm_clock_ghz},
              {"memory_clock_ghz", d.memory_clock_ghz},
              {"memory_bus_bits", d.memory_bus_bits},
              {"peak_fp32_tflops", d.peak_fp32_tflops},
              {"peak_bandwidth_gbs", d.peak_bandwidth_gbs},
              {"l2_bytes", d.l2_bytes}};
}

// ------------------------------------------------------------------------------- the training step

struct StepRun {
  Setting setting;
  std::string status = "not run", error;
  int64_t tokens = 0, frames = 0, decoded_frames = 0;
  double host_target_logmel_s = 0;
  std::vector<double> wall, trainer_seconds, tail, losses;
  std::vector<double> stream_waits;  // times a step waited for the whole compute stream
  int non_finite_steps = 0;
  size_t warmup_peak_live = 0, warmup_peak_reserved = 0, warmup_used = 0;
  size_t peak_live = 0, peak_reserved = 0, used_max = 0, reserved_at_used_max = 0;
  bool used_ge_reserved = true;
  uint64_t cuda_mallocs_timed = 0;
};

StepRun run_setting(const Args& a, const Setting& s, model::VitsModel& vits, const model::MelSpectrogram& mel,
                    const Tensor& initial_params, const std::vector<int32_t>& ids) {
  StepRun r;
  r.setting = s;
  const io::VitsConfig& c = vits.config();
  const int hop = c.total_upsample();
  r.tokens = static_cast<int64_t>(ids.size());

  // Each setting starts from the same weights and an empty cache, so its peaks are its own.
  vits.params().flat().copy_from(initial_params);
  empty_cache();

  std::vector<model::TrainingItem> batch(static_cast<size_t>(s.batch));
  for (int b = 0; b < s.batch; ++b) {
    Rng data_rng(a.seed + 1000 + static_cast<uint64_t>(b));
    batch[b].ids = ids;
    batch[b].wave = model::synthetic_speech(c.sampling_rate, a.seconds, data_rng);
    if (c.num_speakers > 1) batch[b].speaker_id = 0;
  }
  r.frames = static_cast<int64_t>(batch[0].wave.size()) / hop;
  r.decoded_frames = s.segment_frames > 0 ? std::min<int64_t>(s.segment_frames, r.frames) : r.frames;
  {
    const auto t0 = Clock::now();
    std::vector<Tensor> targets;
    for (const model::TrainingItem& item : batch) targets.push_back(mel.log_mel_of(item.wave));
    r.host_target_logmel_s = seconds_since(t0);
    if (!a.targets_in_step)
      for (size_t b = 0; b < batch.size(); ++b) batch[b].target_logmel = targets[b];
  }

  model::TrainerOptions options;
  options.learning_rate = a.learning_rate;
  options.step.segment_frames = s.segment_frames;
  options.step.recompute_decoder = s.recompute;
  const std::vector<std::vector<model::TrainingItem>> micro{batch};
  try {
    options.disc_warmup_steps = 0;  // full: the timed steps include the adversarial terms' backward
    std::unique_ptr<model::GeneratorTrainer> objective =
        a.objective == model::MelTrainer::kName
            ? std::make_unique<model::MelTrainer>(vits, mel, options, a.seed)
            : model::make_generator_trainer(a.objective, vits, options, a.seed);
    model::GeneratorTrainer& trainer = *objective;
    for (int i = 0; i < a.warmup; ++i) {
      trainer.step(micro, 0);
      sync();
      const DeviceMemoryStats st = memory_stats();
      r.warmup_peak_live = std::max(r.warmup_peak_live, st.peak_live_bytes);
      r.warmup_peak_reserved = std::max(r.warmup_peak_reserved, st.peak_reserved_bytes);
      r.warmup_used = std::max(r.warmup_used, device_used_bytes());
    }
    const uint64_t mallocs_before = memory_stats().cuda_mallocs;
    for (int i = 0; i < a.steps; ++i) {
      sync();
      const auto t0 = Clock::now();
      const uint64_t waits_before = kernels::stream_waits();
      const model::StepStats st = trainer.step(micro, 0);  // resets the allocator's peaks at its start
      const double returned = seconds_since(t0);
      r.stream_waits.push_back(static_cast<double>(kernels::stream_waits() - waits_before));
      sync();
      const double wall = seconds_since(t0);
      r.wall.push_back(wall);
      r.tail.push_back(wall - returned);
      r.trainer_seconds.push_back(st.seconds);
      r.losses.push_back(st.loss);
      if (!st.finite) ++r.non_finite_steps;
      const DeviceMemoryStats ms = memory_stats();
      r.peak_live = std::max(r.peak_live, ms.peak_live_bytes);
      r.peak_reserved = std::max(r.peak_reserved, ms.peak_reserved_bytes);
      const size_t used = device_used_bytes();
      // cudaMemGetInfo counts everything on the device (context, library workspaces outside the
      // allocator, other processes): it can only be at or above what the allocator holds.
      if (used < ms.reserved_bytes) r.used_ge_reserved = false;
      if (used > r.used_max) {
        r.used_max = used;
        r.reserved_at_used_max = ms.reserved_bytes;
      }
    }
    r.cuda_mallocs_timed = memory_stats().cuda_mallocs - mallocs_before;
    r.status = r.non_finite_steps ? "non_finite" : "ok";
  } catch (const std::exception& e) {
    r.error = e.what();
    r.status = is_out_of_memory(r.error) ? "out_of_memory" : "error";
    try {
      sync();
    } catch (const std::exception& e2) {
      r.error += std::string(" (then: ") + e2.what() + ")";
    }
  }
  empty_cache();
  return r;
}

json step_json(const StepRun& r, int hop, int sample_rate) {
  const double med = median_of(r.wall);
  const double decoded_audio_s =
      static_cast<double>(r.setting.batch) * static_cast<double>(r.decoded_frames * hop) / sample_rate;
  json j{{"name", r.setting.name},
         {"batch", r.setting.batch},
         {"segment_frames", r.setting.segment_frames},
         {"recompute_decoder", r.setting.recompute},
         {"tokens", r.tokens},
         {"frames", r.frames},
         {"decoded_frames", r.decoded_frames},
         {"decoded_audio_seconds_per_step", decoded_audio_s},
         {"status", r.status},
         {"error", r.error},
         {"host_target_logmel_s", r.host_target_logmel_s},
         {"warmup_peak_live_bytes", r.warmup_peak_live},
         {"warmup_peak_reserved_bytes", r.warmup_peak_reserved},
         {"warmup_device_used_bytes", r.warmup_used}};
  if (!r.wall.empty()) {
    j["step_seconds"] = r.wall;
    j["median_step_s"] = med;
    j["min_step_s"] = *std::min_element(r.wall.begin(), r.wall.end());
    j["median_trainer_seconds"] = median_of(r.trainer_seconds);
    j["median_sync_tail_s"] = median_of(r.tail);
    j["samples_per_s"] = med > 0 ? r.setting.batch / med : 0.0;
    j["decoded_audio_s_per_s"] = med > 0 ? decoded_audio_s / med : 0.0;
    j["losses"] = r.losses;
    j["non_finite_steps"] = r.non_finite_steps;
    j["peak_live_bytes"] = r.peak_live;
    j["peak_reserved_bytes"] = r.peak_reserved;
    j["device_used_max_bytes"] = r.used_max;
    j["device_used_minus_reserved_bytes"] =
        static_cast<double>(r.used_max) - static_cast<double>(r.reserved_at_used_max);
    j["device_used_ge_reserved"] = r.used_ge_reserved;
    j["cuda_mallocs_during_timed_steps"] = r.cuda_mallocs_timed;
    j["median_stream_waits_per_step"] = median_of(r.stream_waits);
    j["library_memory_bytes"] = kernels::library_memory_bytes();
    j["library_workspace_bytes"] = kernels::library_workspace_bytes();
  }
  return j;
}

// ------------------------------------------------------------------------------- AdamW alone

json run_adamw(const Args& a, model::VitsModel& vits, const kernels::DeviceInfo& info) {
  ParameterStore& store = vits.params();
  if (!store.grad_enabled()) store.enable_grad(model::trainable_in_mel_mode);
  json j{{"name", "adamw"}};
  try {
    // The trainer's groups: every trainable parameter, all with weight decay.
    const AdamWConfig cfg;
    const std::vector<kernels::AdamRange> ranges =
        adam_ranges_for(store, [](const std::string&) { return true; }, cfg.weight_decay);
    int64_t updated = 0;
    for (const kernels::AdamRange& r : ranges) updated += r.end - r.begin;
    AdamW opt(store.flat_numel(), cfg, ranges, DType::F32, g_device);
    Tensor& params = store.flat();
    const Tensor& grads = store.grads();
    for (int i = 0; i < 3; ++i) opt.step(params, grads, a.learning_rate);
    sync();
    // Back-to-back launches, one synchronisation: the kernel's throughput, not the host's latency.
    const auto t0 = Clock::now();
    for (int i = 0; i < a.adam_reps; ++i) opt.step(params, grads, a.learning_rate);
    sync();
    const double per_step = seconds_since(t0) / a.adam_reps;
    // Per updated element: reads param, grad, exp_avg, exp_avg_sq; writes param, exp_avg, exp_avg_sq
    // (kernels/adam.h); f32 each. Frozen elements (outside every range) are not touched.
    const double bytes = static_cast<double>(updated) * (4 + 3) * 4;
    const double gbs = bytes / per_step / 1e9;
    // The gradient norm the trainer computes before every update: one read of the whole gradient
    // buffer and a reduction to the host.
    double norm = 0;
    const auto tn = Clock::now();
    for (int i = 0; i < a.adam_reps; ++i) norm = global_norm(grads);
    const double norm_s = seconds_since(tn) / a.adam_reps;
    const double norm_bytes = static_cast<double>(grads.numel()) * 4;
    j.update({{"status", "ok"},
              {"elements_total", store.flat_numel()},
              {"elements_updated", updated},
              {"ranges", ranges.size()},
              {"reps", a.adam_reps},
              {"step_s", per_step},
              {"bytes_per_step", bytes},
              {"bytes_counted", "per updated element: 4 reads (param, grad, exp_avg, exp_avg_sq) + 3 writes "
                                "(param, exp_avg, exp_avg_sq), 4 bytes each"},
              {"achieved_gbs", gbs},
              {"fraction_of_peak_bandwidth", info.peak_bandwidth_gbs > 0 ? gbs / info.peak_bandwidth_gbs : 0.0},
              {"grad_norm_s", norm_s},
              {"grad_norm_gbs", norm_bytes / norm_s / 1e9},
              {"grad_norm_value", norm}});
  } catch (const std::exception& e) {
    j["status"] = is_out_of_memory(e.what()) ? "out_of_memory" : "error";
    j["error"] = e.what();
  }
  return j;
}

// ------------------------------------------------------------------------------- log-mel alone

json run_logmel(const Args& a, const model::VitsModel& vits, const model::MelSpectrogram& mel, int batch) {
  const io::VitsConfig& c = vits.config();
  json j{{"name", "logmel"}, {"batch", batch}, {"seconds", a.seconds}};
  try {
    std::vector<float> host;
    int64_t S = 0;
    for (int b = 0; b < batch; ++b) {
      Rng data_rng(a.seed + 1000 + static_cast<uint64_t>(b));
      std::vector<float> w = model::synthetic_speech(c.sampling_rate, a.seconds, data_rng);
      S = static_cast<int64_t>(w.size());
      host.insert(host.end(), w.begin(), w.end());
    }
    Tensor wave = Tensor::from_vector(host, {batch, S}).to(g_device);
    auto slot = std::make_shared<autograd::GradSlot>();
    slot->shape = wave.shape();
    slot->dtype = DType::F32;
    slot->device = g_device;
    wave.set_grad_slot(slot);
    const int64_t frames = mel.frames(S);
    const Tensor grad_out = Tensor::full({batch, mel.n_mels(), frames}, 1.0, DType::F32, g_device);

    auto forward_only = [&] {
      autograd::NoGradScope no_grad;
      Tensor out = mel.log_mel(wave);
      sync();
    };
    auto forward_backward = [&] {
      slot->grad = Tensor();  // a fresh gradient buffer each time, as in a training step
      autograd::Tape tape;
      Tensor out;
      {
        autograd::RecordingScope recording(tape);
        out = mel.log_mel(wave);
      }
      tape.backward_from(out, grad_out);
      sync();
    };
    for (int i = 0; i < 2; ++i) forward_backward();  // plans, cuBLAS handles, caches
    std::vector<double> fwd, fb;
    for (int i = 0; i < a.logmel_reps; ++i) {
      auto t0 = Clock::now();
      forward_only();
      fwd.push_back(seconds_since(t0));
      t0 = Clock::now();
      forward_backward();
      fb.push_back(seconds_since(t0));
    }
    const model::MelConfig& mc = mel.config();
    const double n = mc.n_fft;
    const double transforms = static_cast<double>(batch) * static_cast<double>(frames);
    // The usual FFT estimate, 5 N log2 N flops per length-N transform (a real-input transform does
    // about half of that); the backward runs one inverse transform per frame.
    const double fft_flops_fwd = transforms * 5 * n * std::log2(n);
    const double mel_flops = 2.0 * static_cast<double>(mel.n_mels()) * static_cast<double>(mel.bins()) * transforms;
    const double f_med = median_of(fwd), fb_med = median_of(fb);
    j.update({{"status", "ok"},
              {"samples", S},
              {"frames", frames},
              {"n_fft", mc.n_fft},
              {"hop", mc.hop},
              {"n_mels", mel.n_mels()},
              {"reps", a.logmel_reps},
              {"forward_s", f_med},
              {"forward_backward_s", fb_med},
              {"fft_flops_forward_estimate", fft_flops_fwd},
              {"fft_flops_forward_backward_estimate", 2 * fft_flops_fwd},
              {"mel_projection_flops_forward_backward", 2 * mel_flops},
              {"flops_note", "estimate: 5 N log2 N per FFT of length n_fft (real-input transforms do about half), one "
                             "forward transform per frame and one inverse in the backward; plus the exact mel "
                             "projection GEMM flops"},
              {"forward_backward_gflops_estimate", (2 * fft_flops_fwd + 2 * mel_flops) / fb_med / 1e9}});
  } catch (const std::exception& e) {
    j["status"] = is_out_of_memory(e.what()) ? "out_of_memory" : "error";
    j["error"] = e.what();
  }
  return j;
}

// ------------------------------------------------------------------------------- main

int run(int argc, char** argv) {
  Args a;
  CLI::App app{"bench_train: a training objective's step on a CUDA device at the 8 GB target's shapes"};
  app.add_option("--config", a.config_path, "HF config.json (random weights; default tests/data/mms_tts_eng/config.json)");
  app.add_option("--tokenizer", a.tokenizer_dir, "Directory with vocab.json (default: the config's)");
  app.add_option("--seed", a.seed, "Seeds the weights, the data and the step's draws (default 0)");
  app.add_option("--seconds", a.seconds, "Length of every utterance (default 10)");
  app.add_option("--tokens-per-second", a.tokens_per_second, "Text tokens (with blanks) per second of audio (default 15)");
  app.add_option("--text", a.text, "Sentence cycled to make the token sequence");
  app.add_option("--warmup", a.warmup, "Untimed steps per setting (default 1)");
  app.add_option("--steps", a.steps, "Timed steps per setting (default 10; --quick: 3)");
  app.add_option("--lr", a.learning_rate, "Learning rate (default 2e-4)");
  app.add_option("--budget", a.budget, "Allocator budget, e.g. 7.5G; 0 for none (default 7.5G)");
  app.add_option("--setting", a.settings,
                 "Run only settings whose name contains this (repeatable; adamw and logmel are names too)");
  app.add_flag("--exact", a.exact, "--setting gives whole names (b4_whole_2s: not its _recompute)");
  app.add_flag("--targets-in-step", a.targets_in_step,
               "Leave the target log-mels to the step (host, every step, as the training loop does)");
  app.add_flag("--quick", a.quick, "3 timed steps per setting, fewer AdamW and log-mel repetitions");
  app.add_flag("--list", a.list, "Print the setting names and exit");
  app.add_option("--json", a.json_path, "Write the results as JSON to FILE");
  app.add_option("--objective", a.objective,
                 "The training step timed: mel (default; the one bench/reference/train_step.py reproduces), vae or "
                 "full (a seeded discriminator of the config; segment settings only)");
  app.add_option("--device", a.device, "cuda (default), or cpu to check the benchmark itself without a GPU")
      ->check(CLI::IsMember({"cuda", "cpu"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    model::require_training_objective_name(a.objective);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: --objective: %s\n", e.what());
    return 2;
  }
  if (a.quick) {
    if (app.count("--steps") == 0) a.steps = 3;
    a.adam_reps = 20;
    a.logmel_reps = 5;
  }
  if (a.steps < 1 || a.warmup < 0 || !(a.seconds > 0) || !(a.tokens_per_second > 0)) {
    std::fprintf(stderr, "error: --steps must be >= 1, --warmup >= 0, --seconds and --tokens-per-second > 0\n");
    return 2;
  }

  // vae and full decode a window of the posterior's latents: they have segment settings only (a whole-utterance
  // name is refused below with the valid ones, as bench/reference/train_step.py does).
  const bool whole_utterances = a.objective == model::MelTrainer::kName;
  std::vector<Setting> settings;
  for (const auto& [batch, segment] : std::vector<std::pair<int, int>>{{4, 0}, {16, 32}})
    for (bool recompute : {false, true})
      if (segment > 0 || whole_utterances)
        settings.push_back({setting_name(batch, segment, recompute, a.seconds), batch, segment, recompute});
  std::vector<std::string> names;
  for (const Setting& s : settings) names.push_back(s.name);
  names.insert(names.end(), {"adamw", "logmel"});
  if (a.list) {
    for (const std::string& n : names) std::printf("%s\n", n.c_str());
    return 0;
  }
  // The names depend on --seconds (b4_whole_2s at --seconds 2): a setting of another length selects nothing.
  {
    std::vector<std::string> unmatched;
    for (const std::string& p : a.settings)
      if (std::none_of(names.begin(), names.end(), [&](const std::string& n) { return matches(a, p, n); }))
        unmatched.push_back(p);
    if (report_unmatched("--setting", unmatched, names)) return kExitBadArguments;
  }

  g_device = a.device == "cpu" ? Device::CPU : Device::CUDA;
  kernels::DeviceInfo info;
  info.name = "cpu";
  size_t budget = 0;
  if (g_device == Device::CUDA) {
    std::string why;
    if (!kernels::built_with_cuda() || !kernels::cuda_device_available(&why)) {
      std::printf("bench_train: skipped: no usable CUDA device (%s)\n",
                  kernels::built_with_cuda() ? why.c_str() : "built without CUDA");
      return kExitSkipped;
    }
    info = kernels::device_info();
    budget = (a.budget == "0" || a.budget == "none") ? 0 : parse_memory_size(a.budget);
    DeviceAllocator::instance().set_budget(budget);  // before the weights: they count against it too
  }
  const size_t context_used = device_used_bytes();  // the context and whatever else is on the device

  model::VitsModel vits(io::VitsConfig::from_file(a.config_path));
  vits.initialize(a.seed);
  const Tensor initial_params = vits.params().flat().clone();  // host copy: every setting starts here
  vits.to(g_device);
  const io::VitsConfig& c = vits.config();
  const int hop = c.total_upsample();
  const model::MelSpectrogram mel(model::mel_config_for(c));

  std::string tok_dir = a.tokenizer_dir;
  if (tok_dir.empty()) tok_dir = std::filesystem::path(a.config_path).parent_path().string();
  if (tok_dir.empty()) tok_dir = ".";
  const io::Tokenizer tokenizer = io::Tokenizer::from_dir(tok_dir);
  std::vector<int32_t> ids;
  {
    std::vector<std::string> words;
    std::istringstream ws(a.text);
    for (std::string w; ws >> w;) words.push_back(w);
    VC_CHECK(!words.empty(), "--text is empty");
    std::string text;
    for (size_t i = 0;; ++i) {
      VC_CHECK(i < 100000, "--text gives too few tokens for " << a.seconds << " s");
      text += (i ? " " : "") + words[i % words.size()];
      ids = tokenizer.encode(text).ids;
      if (static_cast<double>(ids.size()) >= a.seconds * a.tokens_per_second) break;
    }
  }

  std::printf("bench_train: %s (random weights, seed %llu, %lld parameters) on %s (sm_%d%d, %s, peak %.0f GB/s, "
              "%.1f fp32 TFLOP/s)\n",
              a.config_path.c_str(), static_cast<unsigned long long>(a.seed),
              static_cast<long long>(vits.params().count()), info.name.c_str(), info.compute_major,
              info.compute_minor, format_bytes(info.total_memory).c_str(), info.peak_bandwidth_gbs,
              info.peak_fp32_tflops);
  if (g_device == Device::CPU)
    std::printf("CPU kernels: %d OpenMP threads, %s\n", omp_get_max_threads(), blas_config().c_str());
  std::printf("budget %s; %zu tokens per %.3g s utterance; %d warm-up + %d timed steps per setting; targets' log-mel "
              "%s\n",
              budget ? format_bytes(budget).c_str() : "none", ids.size(), a.seconds, a.warmup, a.steps,
              a.targets_in_step ? "computed in every step (host)" : "precomputed");
  std::fflush(stdout);

  json doc{{"program", "bench_train"},
           {"implementation", "vitscuda"},
           {"device", device_json(info)},
           {"config", a.config_path},
           {"parameters", vits.params().count()},
           {"seed", a.seed},
           {"seconds", a.seconds},
           {"tokens", ids.size()},
           {"warmup", a.warmup},
           {"steps", a.steps},
           {"quick", a.quick},
           {"budget_bytes", budget},
           {"targets_in_step", a.targets_in_step},
           {"context_used_bytes", context_used},
           {"timing", "the objective's step then device_synchronize, wall clock; median over the timed steps"}};
  if (g_device == Device::CPU) {
    doc["cpu_threads"] = omp_get_max_threads();
    doc["blas"] = blas_config();
  }
  json step_results = json::array();
  bool failed = false;
  std::vector<StepRun> runs;
  for (const Setting& s : settings) {
    if (!selected(a, s.name)) continue;
    std::printf("-- %s ...", s.name.c_str());
    std::fflush(stdout);
    const auto t0 = Clock::now();
    StepRun r = run_setting(a, s, vits, mel, initial_params, ids);
    std::printf(" %s (%.1f s)\n", r.status.c_str(), seconds_since(t0));
    if (!r.error.empty()) std::printf("   %s\n", r.error.c_str());
    std::fflush(stdout);
    if (r.status == "error" || r.status == "non_finite") failed = true;
    step_results.push_back(step_json(r, hop, c.sampling_rate));
    runs.push_back(std::move(r));
  }
  doc["settings"] = step_results;
  doc["objective"] = a.objective;

  if (!runs.empty()) {
    std::printf("\n%-26s %-13s %9s %9s %8s %9s %11s %11s %11s %10s\n", "setting", "status", "s/step", "min s",
                "items/s", "tail ms", "peak live", "peak rsrvd", "dev used", "host tgt s");
    for (const StepRun& r : runs) {
      if (r.wall.empty()) {
        std::printf("%-26s %-13s %9s %9s %8s %9s %11s %11s %11s %10.3f\n", r.setting.name.c_str(), r.status.c_str(),
                    "-", "-", "-", "-", "-", "-", "-", r.host_target_logmel_s);
        continue;
      }
      const double med = median_of(r.wall);
      std::printf("%-26s %-13s %9.4f %9.4f %8.2f %9.3f %11s %11s %11s %10.3f\n", r.setting.name.c_str(),
                  r.status.c_str(), med, *std::min_element(r.wall.begin(), r.wall.end()), r.setting.batch / med,
                  1e3 * median_of(r.tail), format_bytes(r.peak_live).c_str(), format_bytes(r.peak_reserved).c_str(),
                  format_bytes(r.used_max).c_str(), r.host_target_logmel_s);
      if (!r.used_ge_reserved)
        std::printf("   warning: cudaMemGetInfo's used bytes fell below the allocator's reserved bytes\n");
    }
    std::printf("s/step: median wall time of the objective's step + device sync; tail: the part after step() "
                "returned; dev used: cudaMemGetInfo high-water (context %s); host tgt: host log-mel of the "
                "batch's targets, once\n",
                format_bytes(context_used).c_str());
  }

  if (selected(a, "adamw")) {
    const json j = run_adamw(a, vits, info);
    if (j["status"] == "ok")
      std::printf("\nAdamW over %lld of %lld elements: %.3f ms/step, %.1f GB/s (%.0f%% of %.0f GB/s peak); gradient "
                  "norm %.3f ms (%.1f GB/s)\n",
                  j["elements_updated"].get<long long>(), j["elements_total"].get<long long>(),
                  1e3 * j["step_s"].get<double>(), j["achieved_gbs"].get<double>(),
                  100 * j["fraction_of_peak_bandwidth"].get<double>(), info.peak_bandwidth_gbs,
                  1e3 * j["grad_norm_s"].get<double>(), j["grad_norm_gbs"].get<double>());
    else {
      std::printf("\nAdamW: %s: %s\n", j["status"].get<std::string>().c_str(), j["error"].get<std::string>().c_str());
      failed |= j["status"] == "error";
    }
    doc["adamw"] = j;
    vits.params().flat().copy_from(initial_params);
  }
  if (selected(a, "logmel")) {
    const json j = run_logmel(a, vits, mel, 4);
    if (j["status"] == "ok")
      std::printf("log-mel, batch 4 x %.3g s (%lld frames each): forward %.3f ms, forward+backward %.3f ms, ~%.1f "
                  "GFLOP/s (estimate: 5 N log2 N per FFT)\n",
                  a.seconds, j["frames"].get<long long>(), 1e3 * j["forward_s"].get<double>(),
                  1e3 * j["forward_backward_s"].get<double>(), j["forward_backward_gflops_estimate"].get<double>());
    else {
      std::printf("log-mel: %s: %s\n", j["status"].get<std::string>().c_str(), j["error"].get<std::string>().c_str());
      failed |= j["status"] == "error";
    }
    doc["logmel"] = j;
  }

  if (!a.json_path.empty()) {
    write_json_file(a.json_path, doc);
    std::printf("wrote %s\n", a.json_path.c_str());
  }
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace vitscuda::bench

int main(int argc, char** argv) { return vitscuda::bench::bench_main(vitscuda::bench::run, argc, argv); }
