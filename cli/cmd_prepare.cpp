#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "common/error.h"
#include "model/prepare.h"

namespace vitscuda::cli {

namespace {

struct PrepareArgs {
  model::PrepareOptions options;
  std::string format = "auto";
};

void run_prepare(PrepareArgs& args) {
  args.options.format = io::parse_manifest_format(args.format);
  args.options.progress = stderr;
  const model::PrepareSummary summary = model::prepare_dataset(args.options);
  std::fputs(model::format_prepare_summary(summary).c_str(), stdout);
  std::fflush(stdout);
  VC_CHECK(summary.accepted > 0, "nothing accepted: all "
                                     << summary.manifest_rows << " rows of " << summary.manifest_path
                                     << " were rejected; the reasons are in " << summary.out_dir << "/rejected.tsv");
}

}  // namespace

void register_prepare(CLI::App& app) {
  auto args = std::make_shared<PrepareArgs>();
  model::PrepareOptions& o = args->options;
  CLI::App* cmd = app.add_subcommand(
      "prepare",
      "Validate a corpus and cache its token ids and resampled audio for training.\n"
      "Writes OUT/train.vcds, OUT/eval.vcds, OUT/rejected.tsv, OUT/accepted.tsv, OUT/prepare.json (each replaced\n"
      "atomically). OUT may be prepared again for the same tokenizer; a cache made with another tokenizer is\n"
      "only replaced with --force. Exits non-zero when no utterance is accepted.");
  cmd->add_option("--manifest", o.manifest,
                  "LJSpeech metadata.csv (id|text|normalized), CSV/TSV with a header (path|audio|file, "
                  "text|transcript|sentence, optional speaker), or JSONL")
      ->required();
  cmd->add_option("--audio-dir", o.audio_dir,
                  "Directory relative audio paths are resolved against (LJSpeech: DIR/wavs/<id>.wav or "
                  "DIR/<id>.wav); default: the manifest's directory");
  cmd->add_option("--model", o.model_dir, "Model directory (config.json, vocab.json, tokenizer_config.json)")
      ->required();
  cmd->add_option("--out", o.out_dir, "Output directory for the prepared data")->required();
  cmd->add_option("--format", args->format, "Manifest format: auto, ljspeech, csv, tsv, jsonl")->capture_default_str();
  cmd->add_option("--max-samples", o.max_samples,
                  "Keep only the first N accepted utterances in manifest order (0: all); later rows are not examined")
      ->capture_default_str();
  cmd->add_option("--eval-fraction", o.eval_fraction,
                  "Fraction held out for evaluation, chosen by a hash of the id (at least one item when > 0 and "
                  "2+ are accepted)")
      ->capture_default_str();
  cmd->add_option("--min-seconds", o.min_seconds, "Reject shorter utterances")->capture_default_str();
  cmd->add_option("--max-seconds", o.max_seconds, "Reject longer utterances")->capture_default_str();
  cmd->add_option("--segment-frames", o.segment_frames,
                  "Reject utterances with fewer spectrogram frames than the training segment (train "
                  "--segment-frames; 0: no minimum)")
      ->capture_default_str();
  cmd->add_option("--threads", o.threads, "Audio decoding threads")->capture_default_str();
  cmd->add_flag("--force", o.force, "Replace a cache in OUT made with another model's tokenizer");
  cmd->callback([args] { run_prepare(*args); });
}

}  // namespace vitscuda::cli
