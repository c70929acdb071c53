#include "io/metrics_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/error.h"

namespace vitscuda::io {
namespace {

std::string errno_text(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

bool is_json_object_line(const std::string& text, size_t begin, size_t end) {
  const nlohmann::json value = nlohmann::json::parse(text.begin() + static_cast<std::ptrdiff_t>(begin),
                                                     text.begin() + static_cast<std::ptrdiff_t>(end), nullptr,
                                                     /*allow_exceptions=*/false);
  return value.is_object();
}

std::string read_all(int fd, const std::string& path) {
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      VC_FAIL("cannot read metrics log '" << path << "': " << errno_text(errno));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path) : MetricsLog(path, &std::cerr) {}

MetricsLog::MetricsLog(const std::string& path, std::ostream* report) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  VC_CHECK(fd_ >= 0, "cannot open metrics log '" << path << "': " << errno_text(errno));
  try {
    const std::string text = read_all(fd_, path);
    // Walk back from the end: drop an unterminated tail, then complete lines that do not parse.
    size_t keep = text.rfind('\n');
    keep = keep == std::string::npos ? 0 : keep + 1;
    while (keep > 0) {
      const size_t line_begin = keep >= 2 ? text.rfind('\n', keep - 2) : std::string::npos;
      const size_t begin = line_begin == std::string::npos ? 0 : line_begin + 1;
      if (is_json_object_line(text, begin, keep - 1)) break;
      keep = begin;
    }
    for (size_t i = 0; i < keep; ++i) records_at_open_ += text[i] == '\n';
    if (keep < text.size()) {
      truncated_bytes_ = text.size() - keep;
      if (::ftruncate(fd_, static_cast<off_t>(keep)) != 0)
        VC_FAIL("cannot truncate the torn end of metrics log '" << path << "': " << errno_text(errno));
      if (report)
        *report << "metrics log '" << path << "': removed " << truncated_bytes_
                << " bytes of torn or unparseable records at the end (kept " << records_at_open_ << " records)\n";
    }
    size_ = keep;
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::append(const nlohmann::json& record) {
  VC_CHECK(record.is_object(), "metrics log '" << path_ << "': a record must be a JSON object, got " << record.dump());
  // Replace invalid UTF-8 rather than throw: a tag from user data must not stop training.
  const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      // Cut a partial line off so the next append starts on a fresh line.
      if (written > 0 && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
        VC_FAIL("cannot append to metrics log '" << path_ << "': " << errno_text(err)
                                                 << "; cutting off the partial line also failed: " << errno_text(errno));
      }
      VC_FAIL("cannot append to metrics log '" << path_ << "': " << errno_text(err));
    }
    written += static_cast<size_t>(n);
  }
  size_ += line.size();
}

int64_t MetricsLog::truncate_after_step(int64_t step, std::ostream* report) {
  std::string text(size_, '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::pread(fd_, text.data() + got, text.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    VC_CHECK(n > 0, "cannot read metrics log '" << path_ << "': "
                                                << (n == 0 ? std::string("it is shorter than written") : errno_text(errno)));
    got += static_cast<size_t>(n);
  }
  // Every line is a complete JSON object here: the constructor cut off a torn tail, and append()
  // writes whole lines.
  size_t cut = text.size();
  int64_t removed = 0;
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = text.find('\n', begin);
    const size_t line_end = end == std::string::npos ? text.size() : end;
    if (cut == text.size()) {
      const nlohmann::json record = nlohmann::json::parse(text.begin() + static_cast<std::ptrdiff_t>(begin),
                                                          text.begin() + static_cast<std::ptrdiff_t>(line_end), nullptr,
                                                          /*allow_exceptions=*/false);
      if (record.is_object() && record.contains("step") && record["step"].is_number_integer() &&
          record["step"].get<int64_t>() > step)
        cut = begin;
    }
    if (cut != text.size()) ++removed;
    begin = line_end + 1;
  }
  if (removed == 0) return 0;
  VC_CHECK(::ftruncate(fd_, static_cast<off_t>(cut)) == 0,
           "cannot truncate metrics log '" << path_ << "': " << errno_text(errno));
  size_ = cut;
  if (report)
    *report << "metrics log '" << path_ << "': removed " << removed << " records after step " << step
            << " (written after that checkpoint by a run that did not save a later one)\n";
  return removed;
}

void MetricsLog::sync() {
  VC_CHECK(::fsync(fd_) == 0, "cannot fsync metrics log '" << path_ << "': " << errno_text(errno));
}

std::vector<nlohmann::json> read_metrics_log(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VC_CHECK(in, "cannot open metrics log '" << path << "': " << std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  std::vector<nlohmann::json> records;
  size_t begin = 0;
  int64_t line_number = 1;
  while (begin < text.size()) {
    const size_t end = text.find('\n', begin);
    if (end == std::string::npos) break;  // unterminated last line: a torn write
    nlohmann::json value = nlohmann::json::parse(text.begin() + static_cast<std::ptrdiff_t>(begin),
                                                 text.begin() + static_cast<std::ptrdiff_t>(end), nullptr, false);
    VC_CHECK(value.is_object(), "metrics log '" << path << "' line " << line_number << " is not a JSON object: '"
                                                << text.substr(begin, std::min<size_t>(end - begin, 80)) << "'");
    records.push_back(std::move(value));
    begin = end + 1;
    ++line_number;
  }
  return records;
}

}  // namespace vitscuda::io
