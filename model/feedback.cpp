#include "model/feedback.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "engine/random.h"
#include "io/audio.h"
#include "io/dataset.h"
#include "io/unicode_text.h"
#include "model/model_dir.h"
#include "model/prepare.h"
#include "model/training_objective.h"

namespace fs = std::filesystem;

namespace vitscuda::model {

namespace {

const char* kReviewHeader = "id\ttext\taudio\tstatus\tcorrected_audio\tnote";

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::string field;
  std::istringstream is(line);
  while (std::getline(is, field, '\t')) out.push_back(field);
  if (!line.empty() && line.back() == '\t') out.emplace_back();
  return out;
}

std::vector<TrainingItem> load_eval_items(const std::string& path) {
  std::vector<TrainingItem> items;
  if (!fs::exists(path)) return items;
  io::DatasetReader eval = io::DatasetReader::open(path);
  for (size_t i = 0; i < eval.size(); ++i) {
    items.push_back(training_item_of(eval.item(i)));
  }
  return items;
}

// The mean loss of the run's objective (with its window length) over the items, one item at a time.
double eval_loss(const TrainRunOptions& run, const std::string& model_dir, const std::vector<TrainingItem>& items) {
  LoadedModel loaded = load_model_dir(model_dir);
  TrainerOptions options;
  options.step.segment_frames = run.segment_frames;
  const std::unique_ptr<TrainingObjective> evaluator =
      make_training_objective(run.objective, *loaded.model, options, run.seed);
  double sum = 0;
  for (const TrainingItem& item : items) sum += evaluator->evaluate({item}).total;
  return items.empty() ? std::nan("") : sum / static_cast<double>(items.size());
}

}  // namespace

int feedback_generate(const FeedbackGenerateOptions& o) {
  LoadedModel loaded = load_model_dir(o.model_dir);
  loaded.model->to(o.device);
  const io::VitsConfig& c = loaded.model->config();
  std::ifstream in(o.sentences_path);
  VC_CHECK(in, "cannot open the sentence list " << o.sentences_path);
  fs::create_directories(fs::path(o.review_dir) / "audio");
  std::ostringstream tsv;
  tsv << kReviewHeader << "\n";
  std::string line;
  std::vector<std::pair<int, std::string>> sentences;  // line number, text
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    VC_CHECK(line.find('\t') == std::string::npos, o.sentences_path << ":" << line_no << ": tabs are not allowed in a sentence");
    sentences.emplace_back(line_no, line);
  }
  // The sentences through the text front-end at once (one uroman run); one that is not valid UTF-8 is left
  // out and fails alone below.
  std::vector<std::string> texts, front_end_texts(sentences.size());
  std::vector<size_t> valid;
  for (size_t k = 0; k < sentences.size(); ++k) {
    try {
      io::decode_utf8(sentences[k].second, "sentence");
    } catch (const Error&) {
      continue;
    }
    texts.push_back(sentences[k].second);
    valid.push_back(k);
  }
  std::vector<std::string> front = loaded.tokenizer.front_end_texts(texts);
  for (size_t i = 0; i < valid.size(); ++i) front_end_texts[valid[i]] = std::move(front[i]);
  int n = 0, ok = 0;
  for (size_t k = 0; k < sentences.size(); ++k) {
    const int line_no = sentences[k].first;
    line = sentences[k].second;
    char id[16];
    std::snprintf(id, sizeof id, "%04d", ++n);
    try {
      io::TokenizerResult tokens = front_end_texts[k].empty()
                                       ? loaded.tokenizer.encode(line)
                                       : loaded.tokenizer.encode_front_end_text(front_end_texts[k], line);
      SynthesisOptions so;
      so.seed = o.seed + static_cast<uint64_t>(n);
      so.speaker_id = o.speaker;
      so.noise_scale = c.noise_scale;
      so.noise_scale_duration = c.noise_scale_duration;
      so.speaking_rate = c.speaking_rate;
      SynthesisOutput out = loaded.model->synthesize({tokens.ids}, so);
      std::vector<float> wave = out.waveform.to_float_vector();
      wave.resize(static_cast<size_t>(out.sample_lengths[0]));
      const std::string audio = std::string("audio/") + id + ".wav";
      io::write_wav((fs::path(o.review_dir) / audio).string(), wave, c.sampling_rate);
      tsv << id << "\t" << line << "\t" << audio << "\tpending\t\t\n";
      ++ok;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sentence %s (line %d) failed: %s\n", id, line_no, e.what());
    }
  }
  VC_CHECK(n > 0, o.sentences_path << " holds no sentences");
  write_file_atomic((fs::path(o.review_dir) / "review.tsv").string(), tsv.str());
  write_file_atomic((fs::path(o.review_dir) / "README.txt").string(),
                    "Listen to each file in audio/ and edit review.tsv (tab-separated):\n"
                    "  status accepted   the audio is good: training reinforces it\n"
                    "  status rejected   the audio is bad: it is not used\n"
                    "  status corrected  put a recording of the sentence (any format libsndfile reads; a path\n"
                    "                    relative to this folder or absolute) in corrected_audio\n"
                    "Rows left pending are counted and not used. Then run `vitscuda feedback train`.\n");
  std::printf("synthesised %d of %d sentences into %s; review %s/review.tsv\n", ok, n, o.review_dir.c_str(),
              o.review_dir.c_str());
  return ok > 0 ? 0 : 1;
}

TrainingOutcome feedback_train(const FeedbackTrainOptions& o) {
  VC_CHECK(o.replay >= 0 && o.replay < 1, "--replay must be in [0, 1), got " << o.replay);
  const TrainRunOptions& t = o.train;
  const std::string review_tsv = (fs::path(o.review_dir) / "review.tsv").string();
  std::ifstream in(review_tsv);
  VC_CHECK(in, "cannot open " << review_tsv);
  std::string line;
  VC_CHECK(std::getline(in, line) && line == kReviewHeader,
           review_tsv << ": the first line must be the header '" << kReviewHeader << "'");
  int accepted = 0, corrected = 0, rejected = 0, pending = 0, line_no = 1;
  // The usable rows become a manifest that the ordinary prepare pipeline validates.
  std::ostringstream manifest;
  manifest << "path\ttext\n";
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    std::vector<std::string> f = split_tabs(line);
    VC_CHECK(f.size() == 6, review_tsv << ":" << line_no << ": expected 6 tab-separated columns, found " << f.size());
    const std::string& status = f[3];
    auto resolve = [&](const std::string& p) {
      return fs::path(p).is_absolute() ? p : (fs::path(o.review_dir) / p).string();
    };
    std::string audio;
    if (status == "pending") {
      ++pending;
      continue;
    } else if (status == "rejected") {
      ++rejected;
      continue;
    } else if (status == "accepted") {
      audio = resolve(f[2]);
      ++accepted;
    } else if (status == "corrected") {
      VC_CHECK(!f[4].empty(), review_tsv << ":" << line_no << " (" << f[0] << "): status corrected needs corrected_audio");
      audio = resolve(f[4]);
      ++corrected;
    } else {
      VC_FAIL(review_tsv << ":" << line_no << " (" << f[0] << "): unknown status '" << status
                         << "' (pending, accepted, rejected or corrected)");
    }
    VC_CHECK(fs::exists(audio), review_tsv << ":" << line_no << " (" << f[0] << "): audio " << audio << " does not exist");
    manifest << fs::absolute(audio).string() << "\t" << f[1] << "\n";
  }
  std::printf("review: %d accepted, %d corrected, %d rejected, %d pending (not used)\n", accepted, corrected, rejected,
              pending);
  VC_CHECK(accepted + corrected > 0, review_tsv << ": no accepted or corrected rows to train on (" << pending
                                                << " pending, " << rejected << " rejected)");

  fs::create_directories(t.out_dir);
  const std::string manifest_path = (fs::path(t.out_dir) / "review_manifest.tsv").string();
  write_file_atomic(manifest_path, manifest.str());
  PrepareOptions po;
  po.manifest = manifest_path;
  po.model_dir = t.model_dir;
  po.out_dir = (fs::path(t.out_dir) / "review_data").string();
  po.eval_fraction = 0;
  po.force = true;
  PrepareSummary ps = prepare_dataset(po);
  std::printf("%s", format_prepare_summary(ps).c_str());
  VC_CHECK(ps.accepted > 0, "none of the reviewed recordings passed validation (see " << po.out_dir << "/rejected.tsv)");

  // The training mix: every review item plus a replay share of the original data.
  io::DatasetReader review = io::DatasetReader::open((fs::path(po.out_dir) / "train.vcds").string());
  io::DatasetReader original = io::DatasetReader::open((fs::path(t.data_dir) / "train.vcds").string());
  VC_CHECK(original.sample_rate() == review.sample_rate(),
           "the original data is at " << original.sample_rate() << " Hz, the review at " << review.sample_rate() << " Hz");
  const size_t want = static_cast<size_t>(std::llround(o.replay / (1 - o.replay) * static_cast<double>(review.size())));
  const size_t replayed = std::min(want, original.size());
  std::vector<size_t> pick(original.size());
  for (size_t i = 0; i < pick.size(); ++i) pick[i] = i;
  Rng rng(t.seed ^ 0xfeedbac5ULL);
  for (size_t i = pick.size(); i > 1; --i) std::swap(pick[i - 1], pick[static_cast<size_t>(rng.uniform() * i)]);
  const std::string data_dir = (fs::path(t.out_dir) / "data").string();
  fs::create_directories(data_dir);
  {
    io::DatasetWriter w((fs::path(data_dir) / "train.vcds").string(), review.sample_rate(), review.tokenizer_hash());
    for (size_t i = 0; i < review.size(); ++i) w.add(review.item(i));
    for (size_t i = 0; i < replayed; ++i) w.add(original.item(pick[i]));
    w.finish();
  }
  const std::string eval_src = (fs::path(t.data_dir) / "eval.vcds").string();
  if (fs::exists(eval_src))
    fs::copy_file(eval_src, fs::path(data_dir) / "eval.vcds", fs::copy_options::overwrite_existing);
  std::printf("training mix: %zu review items + %zu replayed from %s\n", review.size(), replayed, t.data_dir.c_str());

  const std::vector<TrainingItem> eval_items = load_eval_items((fs::path(data_dir) / "eval.vcds").string());
  const double before = eval_loss(t, t.model_dir, eval_items);
  TrainRunOptions run = t;
  run.data_dir = data_dir;
  run.out_dir = (fs::path(t.out_dir) / "training").string();
  const TrainingOutcome outcome = TrainingRun(run).run();
  if (outcome != TrainingOutcome::Done) return outcome;
  const double after = eval_loss(t, (fs::path(run.out_dir) / "final_model").string(), eval_items);
  std::printf("eval loss before %.4f, after %.4f (%zu eval utterances)\n", before, after, eval_items.size());
  nlohmann::json report = {{"accepted", accepted},   {"corrected", corrected},
                           {"rejected", rejected},   {"pending", pending},
                           {"review_items", review.size()}, {"replayed", replayed},
                           {"validation_rejected", ps.rejected.size()}, {"eval_utterances", eval_items.size()},
                           {"eval_loss_before", std::isfinite(before) ? nlohmann::json(before) : nlohmann::json()},
                           {"eval_loss_after", std::isfinite(after) ? nlohmann::json(after) : nlohmann::json()}};
  write_file_atomic((fs::path(t.out_dir) / "feedback_report.json").string(), report.dump(2) + "\n");
  return TrainingOutcome::Done;
}

}  // namespace vitscuda::model
