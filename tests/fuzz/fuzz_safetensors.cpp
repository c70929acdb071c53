// io/safetensors: SafetensorsFile::from_bytes (what open() runs on a file's bytes), then every
// accessor on every entry the reader accepted.
#include <cstdint>
#include <vector>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/safetensors.h"

using namespace vitscuda;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  io::SafetensorsFile file;
  try {
    file = io::SafetensorsFile::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz.safetensors");
  } catch (const Error&) {
    return 0;
  }
  uint64_t previous_end = 0;
  for (const io::SafetensorsEntry& e : file.entries()) {
    // The reader promises entries in offset order, tiling the data section.
    FUZZ_CHECK(e.begin == previous_end, e.name);
    previous_end = e.end;
    FUZZ_CHECK(file.find(e.name) == &e, e.name);
    const std::vector<uint8_t> raw = file.raw_bytes(e.name);
    FUZZ_CHECK(raw.size() == e.end - e.begin, e.name);
    try {
      const Tensor t = file.load_f32(e.name);
      FUZZ_CHECK(t.shape() == e.shape, e.name);
      const float* values = t.data<float>();
      float sum = 0;  // reads every converted element
      for (int64_t i = 0; i < t.numel(); ++i) sum += values[i];
      (void)sum;
    } catch (const Error&) {
      // Integer and 8-bit float dtypes do not convert to f32: an error naming the tensor.
    }
  }
  uint64_t header_len = 0;  // accepted files are at least 8 bytes long
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  FUZZ_CHECK(previous_end == size - 8 - header_len, "entries do not cover the data section");
  return 0;
}
