#include "model/training_objective.h"

#include <algorithm>

#include "common/error.h"
#include "model/full_trainer.h"
#include "model/trainer.h"

namespace vitscuda::model {

TrainingItem training_item_of(io::DatasetItem&& item) {
  TrainingItem t;
  t.ids = std::move(item.ids);
  t.wave = std::move(item.samples);
  t.speaker_id = item.speaker;
  return t;
}

std::vector<std::string> training_objective_names() {
  return {FullTrainer::kName, VaeTrainer::kName, MelTrainer::kName};
}

const std::string& require_training_objective_name(const std::string& name) {
  const std::vector<std::string> names = training_objective_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string valid;
    for (const std::string& n : names) valid += (valid.empty() ? "" : ", ") + n;
    VC_FAIL("unknown training objective \"" << name << "\"; valid objectives: " << valid);
  }
  return name;
}

std::unique_ptr<TrainingObjective> make_training_objective(const std::string& name, VitsModel& model,
                                                           const TrainerOptions& options, uint64_t seed) {
  return make_generator_trainer(name, model, options, seed);
}

}  // namespace vitscuda::model
