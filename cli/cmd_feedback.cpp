#include <memory>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "cli/exit_status.h"
#include "model/feedback.h"

namespace vitscuda::cli {

void register_feedback(CLI::App& app, int& exit_status) {
  CLI::App* cmd = app.add_subcommand("feedback", "Review synthesised sentences, then train on the accepted and corrected ones");
  cmd->require_subcommand(1);

  auto g = std::make_shared<model::FeedbackGenerateOptions>();
  auto generate_device = std::make_shared<DeviceOptions>();
  CLI::App* gen = cmd->add_subcommand("generate", "Synthesise sentences into a review folder");
  gen->add_option("--model", g->model_dir, "Model directory")->required();
  gen->add_option("--sentences", g->sentences_path, "Text file, one sentence per line")->required();
  gen->add_option("--out", g->review_dir, "Review folder to create")->required();
  gen->add_option("--seed", g->seed, "Seed");
  gen->add_option("--speaker", g->speaker, "Speaker id (multi-speaker models)");
  add_device_options(gen, *generate_device);
  gen->callback([g, generate_device, &exit_status] {
    g->device = resolve_device(*generate_device, "feedback generate");
    exit_status = model::feedback_generate(*g);
  });

  auto t = std::make_shared<model::FeedbackTrainOptions>();
  auto train_device = std::make_shared<DeviceOptions>();
  t->train.epochs = 3;
  t->train.learning_rate = 1e-4;
  // A few reviewed utterances: the objective without a discriminator, which would need many more to learn from.
  t->train.objective = "vae";
  CLI::App* tr = cmd->add_subcommand("train", "Continue training on the reviewed items plus replayed original data");
  tr->add_option("--review", t->review_dir, "Review folder (feedback generate --out), edited")->required();
  tr->add_option("--model", t->train.model_dir, "Model to continue from (the one that generated the review)")->required();
  tr->add_option("--data", t->train.data_dir, "The original prepared data (replay and eval sets)")->required();
  tr->add_option("--out", t->train.out_dir, "Run directory: data/, training/, feedback_report.json")->required();
  tr->add_option("--replay", t->replay, "Share of the training mix drawn from the original data (default 0.5)");
  tr->add_option("--epochs", t->train.epochs, "Epochs (default 3)");
  tr->add_option("--batch-size", t->train.batch_size, "Utterances per batch (default 4)");
  tr->add_option("--lr", t->train.learning_rate, "Learning rate (default 1e-4)");
  tr->add_option("--objective", t->train.objective, "Training objective: vae or mel (default vae)");
  tr->add_option("--segment-frames", t->train.segment_frames, "Decoded window in frames (0: whole, mel only; default 32)");
  tr->add_option("--seed", t->train.seed, "Seed");
  tr->add_option("--max-steps", t->train.max_steps, "Stop after N optimizer steps");
  tr->add_flag("--resume", t->train.resume, "Continue from the newest checkpoint in OUT/training");
  tr->add_flag("--recompute-decoder", t->train.recompute_decoder,
              "Recompute the decoder's residual blocks in the backward: much less memory, one more decoder forward");
  add_device_options(tr, *train_device);
  tr->callback([t, train_device, &exit_status] {
    t->train.device = resolve_device(*train_device, "feedback train");
    exit_status = exit_status_of(model::feedback_train(*t));
  });
}

}  // namespace vitscuda::cli
