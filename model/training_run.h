// `vitscuda train`: the training loop over a prepared dataset, with checkpoints,
// resume, metrics, evaluation and the failure policy (nothing is skipped silently).
#pragma once
#include <cstdint>
#include <string>

#include "engine/tensor.h"

namespace vitscuda::model {

struct TrainRunOptions {
  std::string data_dir, model_dir, out_dir;
  Device device = Device::CPU;  // where the model, its gradients and the optimizer live
  int epochs = 1;
  int batch_size = 4;
  int grad_accum = 1;
  double learning_rate = 2e-4;
  int64_t warmup_steps = 0;
  double lr_decay = 1.0;
  double grad_clip = 1.0;
  double weight_decay = 0.01;
  int64_t max_samples = 0;   // 0: all
  int segment_frames = 32;   // 0: whole utterances
  bool recompute_decoder = false;  // recompute HiFi-GAN residual blocks in the backward (less memory)
  double noise_scale = 0.667;
  double noise_scale_duration = 0.8;
  uint64_t seed = 0;
  bool resume = false;
  int64_t checkpoint_every = 200;  // optimizer steps; 0: only at epoch ends
  int keep_checkpoints = 3;
  int64_t eval_every = 200;        // 0: only at the end
  int64_t log_every = 10;
  int64_t max_steps = 0;           // 0: no limit (stop after `epochs`)
  double max_error_rate = 0.01;    // stop when more samples than this fail
  int max_bad_steps = 3;           // consecutive non-finite or exactly-zero losses before stopping
  // Test hook: the loss of these update attempts of this run (1-based, skipped ones counted) is
  // replaced by NaN, to exercise the failure policy.
  std::string inject_nan_steps;
};

// Runs (or resumes) training; returns the process exit status (0 done, 1 failure policy or error,
// 130 interrupted by SIGINT/SIGTERM after saving a checkpoint). Errors are printed with their cause.
int run_training(const TrainRunOptions& options);

}  // namespace vitscuda::model
