// Append-only JSON Lines metrics log: one JSON object per line, each written with a single
// write(2) on an O_APPEND descriptor before append() returns, so a crash of the process loses at
// most the record being written. Reopening after a crash (or after resume) truncates a torn tail
// (an unterminated last line, or trailing lines that do not parse, as left by a power loss) back
// to the last complete record, reports what it removed, and appends after it.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vitscuda::io {

class MetricsLog {
 public:
  // Opens (creating) `path` for appending; repairs a torn tail as described above, writing one
  // line about it to `report` (unless null).
  explicit MetricsLog(const std::string& path, std::ostream* report);
  explicit MetricsLog(const std::string& path);  // reports to std::cerr
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends `record` (a JSON object) as one line. JSON has no NaN or infinity: such numbers are
  // written as null. Throws naming the path and the errno text; a partially written line is cut
  // off again so the file stays valid.
  void append(const nlohmann::json& record);
  // fsync: makes the records written so far survive a power loss.
  void sync();
  // Cuts the log back to just before the first record whose integer "step" is greater than `step`.
  // A run resumed from the checkpoint of step N calls it with N: records of updates that a killed
  // run made after that checkpoint are about to be made again, and must not appear twice. Returns
  // the number of records removed and, when there are any, writes one line about it to `report`.
  int64_t truncate_after_step(int64_t step, std::ostream* report);

  const std::string& path() const { return path_; }
  uint64_t truncated_bytes() const { return truncated_bytes_; }  // removed by the repair at open
  int64_t records_at_open() const { return records_at_open_; }   // complete lines kept at open

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t truncated_bytes_ = 0;
  int64_t records_at_open_ = 0;
};

// Reads every record; a line that does not parse as a JSON object is an error naming the file and
// line number, except an unterminated last line (a torn write), which is skipped.
std::vector<nlohmann::json> read_metrics_log(const std::string& path);

}  // namespace vitscuda::io
