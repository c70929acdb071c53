// The process exit status of a training outcome: 0 done, 1 stopped by the failure policy (the
// status of every other error too), 130 interrupted (128 + SIGINT, as shells report it; also
// for SIGTERM, after which the run saved a checkpoint to resume from).
#pragma once
#include "model/training_run.h"

namespace vitscuda::cli {

inline int exit_status_of(model::TrainingOutcome outcome) {
  switch (outcome) {
    case model::TrainingOutcome::Done:
      return 0;
    case model::TrainingOutcome::StoppedByFailurePolicy:
      return 1;
    case model::TrainingOutcome::Interrupted:
      return 130;
  }
  return 1;  // not reached: every outcome is listed above
}

}  // namespace vitscuda::cli
