// io/hf_config: VitsConfig::from_file on the input as config.json. An accepted config must
// survive to_json -> from_json unchanged: the model directories vitscuda writes are read back.
#include <cstdint>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/hf_config.h"

using namespace vitscuda;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::scratch_dir() + "/config.json";
  fuzz::write_file(path, data, size);
  io::VitsConfig config;
  try {
    config = io::VitsConfig::from_file(path);
  } catch (const Error&) {
    return 0;
  }
  // Outside the try: an accepted config that its own JSON form fails to reproduce is a finding.
  const nlohmann::json written = config.to_json();
  const io::VitsConfig again = io::VitsConfig::from_json(written, "round trip of " + path);
  FUZZ_CHECK(again.to_json() == written, written.dump());
  FUZZ_CHECK(config.total_upsample() > 0, written.dump());
  return 0;
}
