// JSONL metrics log: appends survive reopening, torn tails from crashes are cut off (and reported),
// write failures leave no partial line.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "io/metrics_log.h"
#include "support/test_support.h"

namespace vitscuda::io {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void append_raw(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::app) << text;
}

TEST(MetricsLog, AppendsAreVisibleImmediatelyAndReopeningAppends) {
  const std::string path = testing::temp_dir("metrics_append") + "/metrics.jsonl";
  {
    MetricsLog log(path, nullptr);
    EXPECT_EQ(log.records_at_open(), 0);
    log.append({{"step", 1}, {"loss", 2.5}});
    // Written through to the file before append() returns, with no close or flush.
    EXPECT_EQ(read_text(path), "{\"loss\":2.5,\"step\":1}\n");
    log.append({{"step", 2}, {"loss", 2.0}, {"tag", "line\nbreak"}});
  }
  {
    MetricsLog log(path, nullptr);
    EXPECT_EQ(log.records_at_open(), 2);
    EXPECT_EQ(log.truncated_bytes(), 0u);
    log.append({{"step", 3}, {"loss", 1.5}});
  }
  const auto records = read_metrics_log(path);
  ASSERT_EQ(records.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(records[i]["step"], i + 1);
  EXPECT_EQ(records[1]["tag"], "line\nbreak");  // escaped, still one line
}

TEST(MetricsLog, TruncateAfterStepDropsWhatAResumedRunRedoes) {
  const std::string path = testing::temp_dir("metrics_truncate_after") + "/metrics.jsonl";
  {
    MetricsLog log(path, nullptr);
    for (int step = 1; step <= 5; ++step) log.append({{"step", step}, {"loss", 1.0 / step}});
    log.append({{"step", 4}, {"eval_loss", 0.5}});  // out of order: must go with the step-5 record before it
  }
  {
    MetricsLog log(path, nullptr);
    std::ostringstream report;
    EXPECT_EQ(log.truncate_after_step(5, &report), 0);
    EXPECT_TRUE(report.str().empty()) << report.str();
    EXPECT_EQ(log.truncate_after_step(3, &report), 3);
    EXPECT_NE(report.str().find("removed 3 records after step 3"), std::string::npos) << report.str();
    // Appending continues right after the kept records.
    log.append({{"step", 4}, {"loss", 9.0}});
  }
  const auto records = read_metrics_log(path);
  ASSERT_EQ(records.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(records[i]["step"], i + 1);
  EXPECT_EQ(records[3]["loss"], 9.0);
  {
    MetricsLog log(path, nullptr);
    EXPECT_EQ(log.truncate_after_step(0, nullptr), 4) << "a fresh start keeps nothing of a run without checkpoints";
  }
  EXPECT_EQ(read_text(path), "");
}

TEST(MetricsLog, TornLastLineIsCutOffAndReported) {
  const std::string path = testing::temp_dir("metrics_torn") + "/metrics.jsonl";
  {
    MetricsLog log(path, nullptr);
    log.append({{"step", 1}});
    log.append({{"step", 2}});
  }
  const std::string torn = "{\"step\": 3, \"lo";
  append_raw(path, torn);
  EXPECT_EQ(read_metrics_log(path).size(), 2u);  // the reader skips an unterminated tail
  std::ostringstream report;
  {
    MetricsLog log(path, &report);
    EXPECT_EQ(log.truncated_bytes(), torn.size());
    EXPECT_EQ(log.records_at_open(), 2);
    log.append({{"step", 3}});
  }
  EXPECT_NE(report.str().find(path), std::string::npos) << report.str();
  EXPECT_NE(report.str().find(std::to_string(torn.size()) + " bytes"), std::string::npos) << report.str();
  const auto records = read_metrics_log(path);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[2]["step"], 3);
}

TEST(MetricsLog, GarbageTailAfterPowerLossIsCutOff) {
  const std::string path = testing::temp_dir("metrics_garbage") + "/metrics.jsonl";
  {
    MetricsLog log(path, nullptr);
    log.append({{"step", 1}});
  }
  const std::string good = read_text(path);
  // A file system may extend the file with zeros, or keep a complete but garbled line.
  append_raw(path, std::string("{\"step\": 2, \"loss\"\n") + std::string(3, '\0') + "\n" + std::string(5, '\0'));
  MetricsLog log(path, nullptr);
  EXPECT_EQ(log.records_at_open(), 1);
  EXPECT_EQ(read_text(path), good);
}

TEST(MetricsLog, WholeFileTornLeavesAnEmptyLog) {
  const std::string path = testing::temp_dir("metrics_all_torn") + "/metrics.jsonl";
  append_raw(path, "{\"step\":");
  MetricsLog log(path, nullptr);
  EXPECT_EQ(log.records_at_open(), 0);
  log.append({{"step", 1}});
  EXPECT_EQ(read_text(path), "{\"step\":1}\n");
}

TEST(MetricsLog, CorruptLineInTheMiddleIsNamedByTheReader) {
  const std::string path = testing::temp_dir("metrics_mid") + "/metrics.jsonl";
  append_raw(path, "{\"step\":1}\nnot json\n{\"step\":3}\n");
  {
    MetricsLog log(path, nullptr);  // the tail is fine, nothing is cut
    EXPECT_EQ(log.truncated_bytes(), 0u);
  }
  try {
    read_metrics_log(path);
    FAIL() << "no error for a corrupt line";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST(MetricsLog, NonObjectsRejectedAndNonFiniteNumbersWrittenAsNull) {
  const std::string path = testing::temp_dir("metrics_values") + "/metrics.jsonl";
  MetricsLog log(path, nullptr);
  EXPECT_THROW(log.append(nlohmann::json::array({1, 2})), Error);
  log.append({{"loss", std::nan("")}, {"grad_norm", INFINITY}});
  const auto records = read_metrics_log(path);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_TRUE(records[0]["loss"].is_null());
  EXPECT_TRUE(records[0]["grad_norm"].is_null());
}

TEST(MetricsLog, FailedAppendLeavesNoPartialLine) {
  const std::string path = testing::temp_dir("metrics_efbig") + "/metrics.jsonl";
  {
    MetricsLog log(path, nullptr);
    log.append({{"step", 1}});
  }
  const std::string before = read_text(path);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlim_t limit = 4096;  // the big record below gets partly written, then write() fails with EFBIG
    rlimit r{limit, limit};
    if (::setrlimit(RLIMIT_FSIZE, &r) != 0) ::_exit(90);
    try {
      MetricsLog log(path, nullptr);
      log.append({{"blob", std::string(10000, 'x')}});
    } catch (const Error& e) {
      ::_exit(std::string(e.what()).find(path) != std::string::npos ? 0 : 91);
    }
    ::_exit(92);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(read_text(path), before);
}

}  // namespace
}  // namespace vitscuda::io
