// io/metrics_log: read_metrics_log on the input as metrics.jsonl, then MetricsLog's repair of a
// torn tail when it reopens the file (as a resumed run does), then one append.
#include <cstdint>
#include <string>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/metrics_log.h"

using namespace vitscuda;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::scratch_dir() + "/metrics.jsonl";
  fuzz::write_file(path, data, size);
  size_t records = 0;
  bool readable = true;
  try {
    records = io::read_metrics_log(path).size();
  } catch (const Error&) {
    readable = false;
  }
  try {
    io::MetricsLog log(path, nullptr);
    FUZZ_CHECK(log.truncated_bytes() <= size, "truncated more than the file");
    // A readable log keeps every complete record; the repair drops only what the reader skips
    // (an unterminated last line).
    if (readable) FUZZ_CHECK(static_cast<size_t>(log.records_at_open()) == records, "repair dropped records");
    log.append({{"step", 1}});
  } catch (const Error&) {
    return 0;
  }
  if (!readable) return 0;
  // Outside any try: a log that read cleanly must still read after the repair and one append,
  // with the appended record last.
  const std::vector<nlohmann::json> after = io::read_metrics_log(path);
  FUZZ_CHECK(after.size() == records + 1, std::to_string(after.size()) + " records after appending to " +
                                              std::to_string(records));
  FUZZ_CHECK(after.back() == nlohmann::json({{"step", 1}}), after.back().dump());
  return 0;
}
