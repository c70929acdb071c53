// io/checkpoint: read_optimizer_state on the input as optimizer.safetensors (the safetensors
// reader plus the metadata and tensor checks of the optimizer state).
#include <cstdint>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/checkpoint.h"

using namespace vitscuda;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::scratch_dir() + "/optimizer.safetensors";
  fuzz::write_file(path, data, size);
  io::OptimizerState state;
  try {
    state = io::read_optimizer_state(path);
  } catch (const Error&) {
    return 0;
  }
  FUZZ_CHECK(state.exp_avg.defined() && state.exp_avg_sq.defined(), "undefined moments");
  FUZZ_CHECK(state.exp_avg.numel() == state.exp_avg_sq.numel() && state.exp_avg.ndim() == 1,
             "moments of different sizes: " + shape_str(state.exp_avg.shape()) + " and " +
                 shape_str(state.exp_avg_sq.shape()));
  FUZZ_CHECK(state.step >= 0, "negative step");
  return 0;
}
