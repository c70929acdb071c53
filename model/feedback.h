// The feedback loop: synthesise sentences for review, then continue training on what the
// reviewer accepted or corrected, mixed with a replay share of the original data.
#pragma once
#include <cstdint>
#include <string>

#include "model/training_run.h"

namespace vitscuda::model {

struct FeedbackGenerateOptions {
  std::string model_dir, sentences_path, review_dir;
  uint64_t seed = 0;
  int speaker = -1;
  Device device = Device::CPU;  // where the model synthesises
};

// Writes REVIEW/audio/NNNN.wav, REVIEW/review.tsv (status "pending") and REVIEW/README.txt.
// Returns the exit status (non-zero when no sentence could be synthesised).
int feedback_generate(const FeedbackGenerateOptions& options);

struct FeedbackTrainOptions {
  std::string review_dir;
  double replay = 0.5;     // share of the training mix drawn from the original data, in [0, 1)
  TrainRunOptions train;   // data_dir: the original prepared data; out_dir: this run's directory
};

// Builds OUT/data from the review and the original data, reports the eval loss before and after,
// trains into OUT/training and writes OUT/feedback_report.json (only when the training is done).
// Returns how the training ended.
TrainingOutcome feedback_train(const FeedbackTrainOptions& options);

}  // namespace vitscuda::model
