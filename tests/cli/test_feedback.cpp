// `vitscuda feedback`: generate a review folder, edit it, train on it; bad reviews are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/audio.h"
#include "support/test_support.h"

using namespace vitscuda;
namespace fs = std::filesystem;
using vitscuda::testing::binary_path;
using vitscuda::testing::run_command;

namespace {

const std::string kModel = vitscuda::testing::data_path("golden/tiny_sdp");

std::vector<float> tone(double seconds, double f0) {
  std::vector<float> x(static_cast<size_t>(seconds * 16000));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(0.3 * std::sin(2 * M_PI * f0 * i / 16000.0));
  return x;
}

// A prepared 6-utterance corpus (the original data the feedback run replays and evaluates on).
std::string original_data(const std::string& dir) {
  fs::create_directories(dir + "/corpus");
  std::ofstream meta(dir + "/corpus/metadata.csv");
  for (int i = 0; i < 6; ++i) {
    io::write_wav(dir + "/corpus/u" + std::to_string(i) + ".wav", tone(0.8, 120 + 15 * i), 16000);
    meta << "u" << i << "|a dog runs home " << i << "|a dog runs home " << i << "\n";
  }
  meta.close();
  auto r = run_command(binary_path("vitscuda") + " prepare --manifest " + dir + "/corpus/metadata.csv --audio-dir " +
                       dir + "/corpus --model " + kModel + " --out " + dir + "/data --eval-fraction 0.2");
  EXPECT_EQ(r.status, 0) << r.output;
  return dir + "/data";
}

// Rewrites review.tsv's status (and corrected_audio) column row by row.
void set_review(const std::string& review, const std::vector<std::pair<std::string, std::string>>& rows) {
  std::ifstream in(review + "/review.tsv");
  std::string header, line;
  std::getline(in, header);
  std::ostringstream out;
  out << header << "\n";
  for (size_t i = 0; std::getline(in, line); ++i) {
    std::vector<std::string> f;
    std::string field;
    std::istringstream ls(line);
    while (std::getline(ls, field, '\t')) f.push_back(field);
    f.resize(6);
    f[3] = rows.at(i).first;
    f[4] = rows.at(i).second;
    out << f[0] << "\t" << f[1] << "\t" << f[2] << "\t" << f[3] << "\t" << f[4] << "\t" << f[5] << "\n";
  }
  in.close();
  std::ofstream(review + "/review.tsv") << out.str();
}

}  // namespace

TEST(Feedback, GenerateReviewTrainAndReport) {
  const std::string tmp = vitscuda::testing::temp_dir("feedback");
  const std::string data = original_data(tmp);
  std::ofstream(tmp + "/sentences.txt") << "the dog runs\n\nhello there friend\nblue sky today\n";
  auto gen = run_command(binary_path("vitscuda") + " feedback generate --model " + kModel + " --sentences " + tmp +
                         "/sentences.txt --out " + tmp + "/review --seed 2");
  ASSERT_EQ(gen.status, 0) << gen.output;
  for (const char* f : {"audio/0001.wav", "audio/0002.wav", "audio/0003.wav", "README.txt"})
    EXPECT_TRUE(fs::exists(tmp + "/review/" + f)) << f;
  std::ifstream tsv(tmp + "/review/review.tsv");
  std::string all((std::istreambuf_iterator<char>(tsv)), {});
  size_t pending = 0;
  for (size_t p = all.find("\tpending\t"); p != std::string::npos; p = all.find("\tpending\t", p + 1)) ++pending;
  EXPECT_EQ(pending, 3u) << all;

  // The tiny model's own audio is shorter than prepare's 0.5 s minimum, so the accepted row is a long
  // enough recording of ours put in place of the generated file.
  io::write_wav(tmp + "/review/audio/0001.wav", tone(0.9, 150), 16000);
  io::write_wav(tmp + "/fixed.wav", tone(1.0, 140), 16000);
  set_review(tmp + "/review", {{"accepted", ""}, {"rejected", ""}, {"corrected", tmp + "/fixed.wav"}});
  auto train = run_command(binary_path("vitscuda") + " feedback train --review " + tmp + "/review --model " + kModel +
                           " --data " + data + " --out " + tmp + "/run --max-steps 3 --batch-size 2 --segment-frames 8");
  ASSERT_EQ(train.status, 0) << train.output;
  EXPECT_NE(train.output.find("eval loss before"), std::string::npos) << train.output;
  nlohmann::json report = nlohmann::json::parse(std::ifstream(tmp + "/run/feedback_report.json"));
  EXPECT_EQ(report["accepted"], 1);
  EXPECT_EQ(report["corrected"], 1);
  EXPECT_EQ(report["rejected"], 1);
  EXPECT_EQ(report["review_items"], 2);
  EXPECT_EQ(report["replayed"], 2);  // replay 0.5: as many original items as review items
  ASSERT_TRUE(report["eval_loss_before"].is_number() && report["eval_loss_after"].is_number()) << report.dump();
  EXPECT_TRUE(std::isfinite(report["eval_loss_after"].get<double>()));
  auto info = run_command(binary_path("vitscuda") + " info " + tmp + "/run/training/final_model");
  EXPECT_EQ(info.status, 0) << info.output;
}

TEST(Feedback, BadOrEmptyReviewsAreRefused) {
  const std::string tmp = vitscuda::testing::temp_dir("feedback_bad");
  const std::string data = original_data(tmp);
  std::ofstream(tmp + "/sentences.txt") << "the dog runs\nhello there\n";
  ASSERT_EQ(run_command(binary_path("vitscuda") + " feedback generate --model " + kModel + " --sentences " + tmp +
                        "/sentences.txt --out " + tmp + "/review")
                .status,
            0);
  const std::string train = binary_path("vitscuda") + " feedback train --review " + tmp + "/review --model " + kModel +
                            " --data " + data + " --out " + tmp + "/run --max-steps 1";
  auto pending = run_command(train);
  EXPECT_NE(pending.status, 0);
  EXPECT_NE(pending.output.find("no accepted or corrected rows"), std::string::npos) << pending.output;
  set_review(tmp + "/review", {{"accepted", ""}, {"maybe", ""}});
  auto bad = run_command(train);
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("review.tsv:3 (0002): unknown status 'maybe'"), std::string::npos) << bad.output;
}
