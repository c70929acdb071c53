// io/checkpoint: read_trainer_state on the input as trainer_state.json. An accepted state must
// survive trainer_state_to_json -> trainer_state_from_json unchanged, since resuming writes it
// back into the next checkpoint.
#include <cstdint>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/checkpoint.h"

using namespace vitscuda;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::scratch_dir() + "/trainer_state.json";
  fuzz::write_file(path, data, size);
  io::TrainerState state;
  try {
    state = io::read_trainer_state(path);
  } catch (const Error&) {
    return 0;
  }
  FUZZ_CHECK(state.position_in_epoch >= 0 && static_cast<size_t>(state.position_in_epoch) <= state.data_order.size(),
             "position_in_epoch " + std::to_string(state.position_in_epoch));
  // Outside any try: a state the reader accepts but the writer refuses (or changes) is a finding.
  const nlohmann::json written = io::trainer_state_to_json(state);
  const io::TrainerState again = io::trainer_state_from_json(written, "round trip of " + path);
  FUZZ_CHECK(io::trainer_state_to_json(again) == written, written.dump());
  return 0;
}
