#include <memory>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "cli/exit_status.h"
#include "model/training_run.h"

namespace vitscuda::cli {

void register_train(CLI::App& app, int& exit_status) {
  auto o = std::make_shared<model::TrainRunOptions>();
  auto device = std::make_shared<DeviceOptions>();
  CLI::App* cmd = app.add_subcommand("train", "Train (fine-tune) a model on a prepared dataset");
  cmd->add_option("--data", o->data_dir, "Prepared dataset directory (vitscuda prepare --out)")->required();
  cmd->add_option("--model", o->model_dir, "Model directory to start from")->required();
  cmd->add_option("--out", o->out_dir, "Run directory: checkpoints/, final_model/, metrics.jsonl")->required();
  cmd->add_option("--objective", o->objective,
                  "What training minimises: full (VITS with its discriminators: the vae losses plus adversarial and "
                  "feature-matching terms, a discriminator trained beside the generator), vae (VITS without "
                  "discriminators: posterior encoder, alignment search, KL, duration and mel losses) or mel (log-mel "
                  "L1 of audio decoded from the prior with the frozen duration predictor's durations) (default " +
                      o->objective + ")");
  cmd->add_option("--c-mel", o->c_mel, "vae, full: weight of the mel loss (default 35)");
  cmd->add_option("--c-kl", o->c_kl, "vae, full: weight of the KL loss (default 1.5)");
  cmd->add_option("--c-dur", o->c_dur, "vae, full: weight of the duration loss (default 1)");
  cmd->add_option("--c-gen", o->c_gen, "full: weight of the generator's adversarial loss (default 1)");
  cmd->add_option("--c-fm", o->c_fm, "full: weight of the feature-matching loss (default 1)");
  cmd->add_option("--c-disc", o->c_disc, "full: weight of the discriminator's loss in its backward (default 3)");
  cmd->add_option("--disc-lr", o->disc_learning_rate,
                  "full: the discriminator's peak learning rate, same schedule (default: --lr)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--disc-warmup-steps", o->disc_warmup_steps,
                  "full: discriminator updates before the adversarial terms reach the generator (default 0 when the "
                  "model directory has discriminator.safetensors, 200 for a freshly initialised discriminator)")
      ->check(CLI::NonNegativeNumber);
  // 1 would divide by zero in AdamW's bias correction; 0 is a valid beta (no momentum).
  const CLI::Validator adam_beta(
      [](const std::string& text) -> std::string {
        const double beta = std::stod(text);
        return beta >= 0.0 && beta < 1.0 ? std::string() : "an AdamW beta must be in [0, 1), got " + text;
      },
      "in [0, 1)");
  cmd->add_option("--adam-beta1", o->adam_beta1, "AdamW beta1 (default 0.8 for full, 0.9 otherwise)")
      ->check(CLI::Number & adam_beta);
  cmd->add_option("--adam-beta2", o->adam_beta2, "AdamW beta2 (default 0.99 for full, 0.999 otherwise)")
      ->check(CLI::Number & adam_beta);
  cmd->add_option("--epochs", o->epochs, "Epochs (default 1)");
  cmd->add_option("--batch-size", o->batch_size, "Utterances per micro-batch (default 4)");
  cmd->add_option("--grad-accum", o->grad_accum, "Micro-batches per optimizer update (default 1)");
  cmd->add_option("--lr", o->learning_rate, "Peak learning rate (default 2e-4)");
  cmd->add_option("--warmup-steps", o->warmup_steps, "Linear warm-up steps (default 0)");
  cmd->add_option("--lr-decay", o->lr_decay, "Learning-rate decay per epoch (VITS: 0.999875; default 1)");
  cmd->add_option("--grad-clip", o->grad_clip, "Max gradient norm, 0 = off (default 1)");
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW weight decay (default 0.01)");
  cmd->add_option("--max-samples", o->max_samples, "Use only the first N samples of the dataset");
  cmd->add_option("--segment-frames", o->segment_frames, "Decode a random window of N frames (0: whole; default 32)");
  cmd->add_flag("--recompute-decoder", o->recompute_decoder,
               "Recompute the decoder's residual blocks in the backward: much less memory, one more decoder forward");
  cmd->add_option("--noise-scale", o->noise_scale, "Prior sampling noise (default 0.667)");
  cmd->add_option("--noise-scale-duration", o->noise_scale_duration, "Duration predictor noise (default 0.8)");
  cmd->add_option("--seed", o->seed, "Seed of every random draw and the data order");
  cmd->add_flag("--resume", o->resume, "Continue from the newest valid checkpoint in OUT/checkpoints");
  cmd->add_option("--checkpoint-every", o->checkpoint_every,
                  "Steps between checkpoints (0: only the final one; default 200)");
  cmd->add_option("--keep-checkpoints", o->keep_checkpoints, "Checkpoints kept (default 3)");
  cmd->add_option("--eval-every", o->eval_every, "Steps between evaluations on eval.vcds (0: none; default 200)");
  cmd->add_option("--eval-max-samples", o->eval_max_samples,
                  "Evaluation utterances (at most 8) also synthesised free-running and scored like vitscuda eval: "
                  "eval_mcd, eval_duration_ratio (0: none; default 4)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--log-every", o->log_every, "Steps between progress lines when not on a terminal (default 10)");
  cmd->add_option("--max-steps", o->max_steps, "Stop after N optimizer steps (default: no limit)");
  cmd->add_option("--max-error-rate", o->max_error_rate, "Stop when more than this fraction of samples fail (0.01)");
  cmd->add_option("--max-bad-steps", o->max_bad_steps, "Stop after N consecutive non-finite or zero losses (3)");
  cmd->add_option("--inject-nan-steps", o->inject_nan_steps, "Testing: comma-separated steps whose loss is NaN")
      ->group("");
  add_device_options(cmd, *device);
  cmd->callback([o, device, &exit_status] {
    o->device = resolve_device(*device, "train");
    exit_status = exit_status_of(model::TrainingRun(*o).run());
  });
}

}  // namespace vitscuda::cli
