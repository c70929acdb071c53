// io/dataset: DatasetReader::from_bytes (the checks open() runs on the mapped file), then every
// item through view() and item().
//
// Input: one mode byte, then the cache. Mode bit 0 recomputes the item, index and header CRC32s
// before reading, so that mutations reach the structural checks behind them instead of always
// failing the header CRC; bit 1 opens with DatasetVerify::HeaderOnly instead of All.
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/crc32.h"
#include "io/dataset.h"

using namespace vitscuda;

namespace {

uint64_t load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
void store32(unsigned char* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Rewrites the CRCs where the layout lets them be found (the harness's own bounds checks;
// the reader's are what is under test).
void fix_crcs(std::vector<unsigned char>& b) {
  if (b.size() < 64) return;
  const uint64_t count = load64(b.data() + 16);
  const uint64_t index_offset = load64(b.data() + 24);
  if (index_offset <= b.size() && count <= (b.size() - index_offset) / 32) {
    for (uint64_t i = 0; i < count; ++i) {
      unsigned char* entry = b.data() + index_offset + 32 * i;
      const uint64_t offset = load64(entry);
      const uint64_t payload = load64(entry + 8);
      if (offset <= b.size() && payload <= b.size() - offset)
        store32(entry + 28, io::crc32(b.data() + offset, payload));
    }
    store32(b.data() + 48, io::crc32(b.data() + index_offset, count * 32));
  }
  store32(b.data() + 60, io::crc32(b.data(), 60));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::vector<unsigned char> bytes(data + 1, data + size);
  if (mode & 1) fix_crcs(bytes);
  const size_t file_size = bytes.size();
  const io::DatasetVerify verify = (mode & 2) ? io::DatasetVerify::HeaderOnly : io::DatasetVerify::All;

  std::optional<io::DatasetReader> reader;
  try {
    reader.emplace(io::DatasetReader::from_bytes(std::move(bytes), "fuzz.vcds", verify));
  } catch (const Error&) {
    return 0;
  }
  const io::DatasetReader& r = *reader;
  FUZZ_CHECK(r.sample_rate() > 0, "sample rate " + std::to_string(r.sample_rate()));
  FUZZ_CHECK(r.size() <= file_size / 32, "more items than index entries fit");
  FUZZ_CHECK(r.total_seconds() >= 0, "negative duration");
  for (size_t i = 0; i < r.size(); ++i) {
    io::DatasetItemView v;
    try {
      v = r.view(i);  // HeaderOnly checks the item's CRC here
    } catch (const Error&) {
      FUZZ_CHECK(verify == io::DatasetVerify::HeaderOnly, "view failed after a full verification");
      continue;
    }
    FUZZ_CHECK(v.num_ids == r.num_ids(i) && v.num_samples == r.num_samples(i), "view disagrees with the index");
    // Touch every byte the view points at: an out-of-bounds pointer is an ASan report.
    uint64_t sum = 0;
    for (char c : v.id) sum += static_cast<unsigned char>(c);
    for (size_t k = 0; k < v.num_ids; ++k) sum += static_cast<uint32_t>(v.ids[k]);
    float total = 0;
    for (size_t k = 0; k < v.num_samples; ++k) total += v.samples[k];
    (void)sum;
    (void)total;
    const io::DatasetItem item = r.item(i);
    FUZZ_CHECK(item.ids.size() == v.num_ids && item.samples.size() == v.num_samples && item.id == v.id,
               "item() disagrees with view()");
  }
  try {
    r.view(r.size());
    FUZZ_CHECK(false, "view past the end did not throw");
  } catch (const Error&) {
  }
  return 0;
}
