// Data preparation end to end on small generated corpora: which utterances are accepted, which
// are rejected and why, what lands in the caches, the eval split rules, overwrite protection,
// and the `vitscuda prepare` command's output and exit status.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "common/error.h"
#include "io/audio.h"
#include "io/dataset.h"
#include "io/tokenizer.h"
#include "model/model_dir.h"
#include "model/prepare.h"
#include "support/test_support.h"

using namespace vitscuda;
namespace fs = std::filesystem;

namespace {

// tiny_sdp: 16 kHz, hop 4*4 = 16 samples, add_blank; its vocab has a-z, 0-6, space, ' - _ –
// but not 7-9 or punctuation like '.', ','.
std::string model_dir() { return vitscuda::testing::data_path("golden/tiny_sdp"); }

// A deterministic voiced-sounding signal: a few harmonics under a syllable-rate envelope.
std::vector<float> speechlike(double seconds, int rate, unsigned seed, float amplitude = 0.3f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> noise(-1.f, 1.f);
  const double f0 = 100 + rng() % 120;
  std::vector<float> x(static_cast<size_t>(std::lround(seconds * rate)));
  for (size_t i = 0; i < x.size(); ++i) {
    const double t = static_cast<double>(i) / rate;
    const double env = 0.6 + 0.4 * std::sin(2 * M_PI * 4 * t);
    double v = 0;
    for (int h = 1; h <= 4; ++h) v += std::sin(2 * M_PI * f0 * h * t) / h;
    x[i] = static_cast<float>(amplitude * (env * v / 2.1 + 0.02 * noise(rng)));
  }
  return x;
}

using RunResult = vitscuda::testing::CommandResult;
RunResult run(const std::string& command) { return vitscuda::testing::run_command(command); }

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// rejected.tsv as id -> (line, reason); the header row is checked too.
std::map<std::string, std::pair<int, std::string>> read_rejected(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "id\tline\tpath\treason\tdetail");
  std::map<std::string, std::pair<int, std::string>> out;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, '\t')) f.push_back(field);
    EXPECT_GE(f.size(), 4u) << line;
    if (f.size() >= 4) out[f[0]] = {std::stoi(f[1]), f[3]};
  }
  return out;
}

std::set<std::string> cache_ids(const std::string& path) {
  std::set<std::string> ids;
  const io::DatasetReader r = io::DatasetReader::open(path);
  for (size_t i = 0; i < r.size(); ++i) ids.insert(r.item(i).id);
  return ids;
}

// The mixed corpus: five good utterances and one of every kind of bad one. Returns the
// LJSpeech manifest path; the expected outcome of each id is in `expect_rejected`.
const std::map<std::string, std::string> expect_rejected = {
    {"silent", "silent"},         {"short", "too_short"},          {"long", "too_long"},
    {"missing", "missing_file"},  {"corrupt", "unreadable_audio"}, {"notext", "empty_text"},
    {"digits", "no_vocab_chars"}, {"nan", "non_finite"},           {"wordy", "more_tokens_than_frames"},
    {"good1", "duplicate_id"},  // the second row with this id
};
const std::vector<std::string> expect_accepted = {"good1", "good2", "good3", "good4", "good5"};

std::string make_mixed_corpus(const std::string& dir) {
  fs::create_directories(dir + "/wavs");
  const std::string w = dir + "/wavs/";
  // 22050 Hz input exercises resampling to the model's 16 kHz; good2 is already at 16 kHz.
  io::write_wav(w + "good1.wav", speechlike(1.0, 22050, 1), 22050);
  io::write_wav(w + "good2.wav", speechlike(0.8, 16000, 2), 16000);
  io::write_wav(w + "good3.wav", speechlike(1.3, 22050, 3), 22050);
  io::write_wav(w + "good4.wav", speechlike(0.7, 22050, 4, 0.01f), 22050);  // quiet, not silent
  io::write_wav(w + "good5.wav", speechlike(2.0, 44100, 5), 44100);
  io::write_wav(w + "silent.wav", std::vector<float>(22050, 0.f), 22050);
  io::write_wav(w + "short.wav", speechlike(0.2, 22050, 6), 22050);
  io::write_wav(w + "long.wav", speechlike(20.5, 16000, 7), 16000);
  {
    std::mt19937 rng(9);
    std::ofstream f(w + "corrupt.wav", std::ios::binary);
    for (int i = 0; i < 4000; ++i) f.put(static_cast<char>(rng()));
  }
  io::write_wav(w + "notext.wav", speechlike(1.0, 22050, 10), 22050);
  io::write_wav(w + "digits.wav", speechlike(1.0, 22050, 11), 22050);
  std::vector<float> with_nan = speechlike(1.0, 16000, 12);
  with_nan[5000] = std::nanf("");
  io::write_wav(w + "nan.wav", with_nan, 16000, io::WavFormat::Float32);
  io::write_wav(w + "wordy.wav", speechlike(0.6, 16000, 13), 16000);
  // 0.6 s at hop 16 is 600 frames; the text (399 characters once its trailing space is stripped) makes 799
  // tokens with blanks.
  std::string wordy;
  for (int i = 0; i < 80; ++i) wordy += "abcd ";
  const std::string manifest = dir + "/metadata.csv";
  std::ofstream m(manifest);
  m << "good1|Hello world.|Hello world.\n"                // 1: '.' dropped, kept
    << "good2|second utterance|second utterance\n"        // 2
    << "silent|this is silent|this is silent\n"           // 3
    << "short|far too short|far too short\n"              // 4
    << "long|far too long|far too long\n"                 // 5
    << "missing|no audio file|no audio file\n"            // 6
    << "corrupt|random bytes|random bytes\n"              // 7
    << "notext|   |   \n"                                 // 8
    << "digits|789|789\n"                                 // 9 (7-9 are not in the vocab)
    << "nan|not a number|not a number\n"                  // 10
    << "wordy|" << wordy << "|" << wordy << "\n"          // 11
    << "good3|third, with a comma|third, with a comma\n"  // 12
    << "broken line without columns\n"                    // 13
    << "good4|quiet but fine|quiet but fine\n"            // 14
    << "good1|same id again|same id again\n"              // 15
    << "good5|fifth one|fifth one\n";                     // 16
  return manifest;
}

model::PrepareOptions options_for(const std::string& manifest, const std::string& out) {
  model::PrepareOptions o;
  o.manifest = manifest;
  o.model_dir = model_dir();
  o.out_dir = out;
  return o;
}

}  // namespace

TEST(Prepare, AcceptsAndRejectsExactlyTheExpectedUtterances) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_mixed");
  const std::string manifest = make_mixed_corpus(dir + "/corpus");
  model::PrepareOptions o = options_for(manifest, dir + "/data");
  o.eval_fraction = 0;
  const model::PrepareSummary s = model::prepare_dataset(o);

  EXPECT_EQ(s.manifest_format, "ljspeech");
  EXPECT_EQ(s.manifest_rows, 16u);
  ::testing::Test::RecordProperty("cases", static_cast<int>(s.manifest_rows));  // for scripts/reliability.sh
  EXPECT_EQ(s.accepted, expect_accepted.size());
  EXPECT_EQ(s.train_items, expect_accepted.size());
  EXPECT_EQ(s.eval_items, 0u);
  EXPECT_EQ(s.sample_rate, 16000);
  EXPECT_EQ(s.hop, 16);

  // rejected.tsv: exactly the bad rows, with their lines and reasons.
  const auto rejected = read_rejected(dir + "/data/rejected.tsv");
  std::map<std::string, std::string> reasons;
  for (const auto& [id, lr] : rejected) reasons[id] = lr.second;
  reasons.erase("");  // the unparsable line has no id
  EXPECT_EQ(reasons, expect_rejected);
  EXPECT_EQ(rejected.at("silent").first, 3);
  EXPECT_EQ(rejected.at("nan").first, 10);
  EXPECT_EQ(rejected.at("good1").first, 15);
  ASSERT_EQ(rejected.count(""), 1u);
  EXPECT_EQ(rejected.at("").first, 13);
  EXPECT_EQ(rejected.at("").second, "bad_columns");
  EXPECT_EQ(s.rejected.size(), expect_rejected.size() + 1);
  EXPECT_EQ(s.rejected_by_reason.at("too_short"), 1u);
  EXPECT_EQ(s.rejected_by_reason.at("more_tokens_than_frames"), 1u);
  // The details say why: the length limit, and the token and frame counts (600 frames of 16 samples, 799 tokens).
  for (const auto& r : s.rejected) {
    if (r.id == "wordy") {
      EXPECT_NE(r.detail.find("799 tokens for 600 frames"), std::string::npos) << r.detail;
      EXPECT_NE(r.detail.find("no monotonic alignment"), std::string::npos) << r.detail;
    }
    if (r.id == "short") EXPECT_NE(r.detail.find("--min-seconds"), std::string::npos) << r.detail;
  }

  // The cache holds the accepted utterances, in manifest order, with the tokenizer's ids and the
  // audio as decoding and resampling it gives (same code path, so bit-identical).
  const io::Tokenizer tok = io::Tokenizer::from_dir(model_dir());
  const io::DatasetReader train = io::DatasetReader::open(dir + "/data/train.vcds");
  ASSERT_EQ(train.size(), expect_accepted.size());
  EXPECT_EQ(train.sample_rate(), 16000);
  EXPECT_EQ(train.tokenizer_hash(), model::tokenizer_hash(model_dir()));
  const std::map<std::string, std::string> texts = {{"good1", "Hello world."},
                                                    {"good2", "second utterance"},
                                                    {"good3", "third, with a comma"},
                                                    {"good4", "quiet but fine"},
                                                    {"good5", "fifth one"}};
  const std::map<std::string, double> seconds = {
      {"good1", 1.0}, {"good2", 0.8}, {"good3", 1.3}, {"good4", 0.7}, {"good5", 2.0}};
  double total = 0;
  for (size_t i = 0; i < train.size(); ++i) {
    const io::DatasetItem it = train.item(i);
    EXPECT_EQ(it.id, expect_accepted[i]);
    EXPECT_EQ(it.speaker, -1);
    EXPECT_EQ(it.ids, tok.encode(texts.at(it.id)).ids) << it.id;
    const io::Audio ref = io::load_audio(dir + "/corpus/wavs/" + it.id + ".wav", 16000);
    EXPECT_EQ(it.samples, ref.samples) << it.id;
    // Resampled length: the duration at 16 kHz, to within a sample of rounding.
    EXPECT_NEAR(static_cast<double>(it.samples.size()), seconds.at(it.id) * 16000, 1.0) << it.id;
    total += seconds.at(it.id);
  }
  EXPECT_NEAR(train.total_seconds(), total, 1e-3);
  EXPECT_EQ(io::DatasetReader::open(dir + "/data/eval.vcds").size(), 0u);

  // Dropped characters are a warning column of accepted.tsv, not a rejection.
  EXPECT_EQ(s.utterances_with_dropped_chars, 2u);
  EXPECT_EQ(s.dropped_chars.at("."), 1u);
  EXPECT_EQ(s.dropped_chars.at(","), 1u);
  const std::string accepted_tsv = read_text(dir + "/data/accepted.tsv");
  EXPECT_NE(accepted_tsv.find("good1\t1\ttrain\t1.000\t"), std::string::npos) << accepted_tsv;
  EXPECT_NE(accepted_tsv.find("\t.\n"), std::string::npos) << accepted_tsv;

  // prepare.json: the counts, the identity of model and manifest.
  const nlohmann::json j = nlohmann::json::parse(read_text(dir + "/data/prepare.json"));
  EXPECT_EQ(j["accepted"], 5);
  EXPECT_EQ(j["rejected"]["total"], 11);
  EXPECT_EQ(j["rejected"]["by_reason"]["silent"], 1);
  EXPECT_EQ(j["rejected"]["by_reason"]["bad_columns"], 1);
  EXPECT_EQ(j["sample_rate"], 16000);
  EXPECT_EQ(j["manifest"]["size_bytes"], fs::file_size(manifest));
  EXPECT_EQ(j["manifest"]["rows"], 16);
  EXPECT_NEAR(j["total_seconds"].get<double>(), total, 1e-3);
  EXPECT_EQ(j["model_dir"], fs::absolute(model_dir()).lexically_normal().string());
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(model::tokenizer_hash(model_dir())));
  EXPECT_EQ(j["tokenizer_hash"], hash);

  // The screen summary names the reasons and examples.
  const std::string table = model::format_prepare_summary(s);
  EXPECT_NE(table.find("accepted"), std::string::npos);
  EXPECT_NE(table.find("silent"), std::string::npos);
  EXPECT_NE(table.find("wordy"), std::string::npos) << table;
}

TEST(Prepare, ThreadCountDoesNotChangeTheCache) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_threads");
  const std::string manifest = make_mixed_corpus(dir + "/corpus");
  model::PrepareOptions one = options_for(manifest, dir + "/one");
  one.threads = 1;
  model::PrepareOptions two = options_for(manifest, dir + "/two");
  two.threads = 2;
  model::prepare_dataset(one);
  model::prepare_dataset(two);
  for (const char* f : {"train.vcds", "eval.vcds", "rejected.tsv", "accepted.tsv"})
    EXPECT_EQ(model::read_file(dir + "/one/" + f), model::read_file(dir + "/two/" + f)) << f;
}

TEST(Prepare, EvalSplitIsByIdAndKeepsOneOnEachSide) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_split");
  fs::create_directories(dir + "/wavs");
  std::ostringstream forward, backward;
  std::vector<std::string> lines;
  for (int i = 0; i < 24; ++i) {
    const std::string id = "utt" + std::to_string(i);
    io::write_wav(dir + "/wavs/" + id + ".wav", speechlike(0.6, 16000, 100 + i), 16000);
    lines.push_back(id + "|number " + std::string(1, static_cast<char>('a' + i)) + "|\n");
  }
  for (const auto& l : lines) forward << l;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) backward << *it;
  std::ofstream(dir + "/forward.csv") << forward.str();
  std::ofstream(dir + "/backward.csv") << backward.str();

  // A large fraction: both sides populated, and membership does not depend on row order.
  model::PrepareOptions a = options_for(dir + "/forward.csv", dir + "/a");
  a.eval_fraction = 0.4;
  model::PrepareOptions b = options_for(dir + "/backward.csv", dir + "/b");
  b.eval_fraction = 0.4;
  const auto sa = model::prepare_dataset(a);
  model::prepare_dataset(b);
  const auto eval_a = cache_ids(dir + "/a/eval.vcds"), eval_b = cache_ids(dir + "/b/eval.vcds");
  EXPECT_EQ(eval_a, eval_b);
  EXPECT_GT(eval_a.size(), 2u);
  EXPECT_LT(eval_a.size(), 22u);
  EXPECT_EQ(sa.eval_items, eval_a.size());
  EXPECT_EQ(sa.train_items + sa.eval_items, 24u);
  for (const auto& id : cache_ids(dir + "/a/train.vcds")) EXPECT_EQ(eval_a.count(id), 0u) << id;

  // A vanishing fraction still holds out one utterance; zero holds out none.
  model::PrepareOptions tiny = options_for(dir + "/forward.csv", dir + "/tiny");
  tiny.eval_fraction = 1e-12;
  const auto st = model::prepare_dataset(tiny);
  EXPECT_EQ(st.eval_items, 1u);
  EXPECT_EQ(cache_ids(dir + "/tiny/eval.vcds").size(), 1u);
  EXPECT_EQ(cache_ids(dir + "/tiny/train.vcds").size(), 23u);
  model::PrepareOptions none = options_for(dir + "/forward.csv", dir + "/none");
  none.eval_fraction = 0;
  EXPECT_EQ(model::prepare_dataset(none).eval_items, 0u);
  // A fraction near one still trains on something.
  model::PrepareOptions most = options_for(dir + "/forward.csv", dir + "/most");
  most.eval_fraction = 1 - 1e-12;
  const auto sm = model::prepare_dataset(most);
  EXPECT_EQ(sm.train_items, 1u);
  EXPECT_EQ(cache_ids(dir + "/most/train.vcds").size(), 1u);
  EXPECT_EQ(cache_ids(dir + "/most/eval.vcds").size(), 23u);

  // --max-samples keeps the first N accepted rows.
  model::PrepareOptions first = options_for(dir + "/forward.csv", dir + "/first");
  first.max_samples = 5;
  first.eval_fraction = 0;
  const auto sf = model::prepare_dataset(first);
  EXPECT_EQ(sf.accepted, 5u);
  EXPECT_EQ(sf.examined, 5u);
  EXPECT_EQ(cache_ids(dir + "/first/train.vcds"), (std::set<std::string>{"utt0", "utt1", "utt2", "utt3", "utt4"}));
  EXPECT_NE(model::format_prepare_summary(sf).find("19 rows not examined"), std::string::npos)
      << model::format_prepare_summary(sf);
}

TEST(Prepare, SpeakerIdsAreCheckedAgainstTheModel) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_speakers");
  fs::create_directories(dir + "/wavs");
  for (const char* id : {"s0", "s2", "s3", "none"})
    io::write_wav(dir + "/wavs/" + std::string(id) + ".wav", speechlike(0.7, 16000, 1), 16000);
  std::ofstream(dir + "/m.jsonl") << "{\"audio\": \"wavs/s0.wav\", \"text\": \"zero\", \"speaker\": 0}\n"
                                  << "{\"audio\": \"wavs/s2.wav\", \"text\": \"two\", \"speaker\": 2}\n"
                                  << "{\"audio\": \"wavs/s3.wav\", \"text\": \"three\", \"speaker\": 3}\n"
                                  << "{\"audio\": \"wavs/none.wav\", \"text\": \"none\"}\n";
  // tiny_dp_multispeaker has 3 speakers.
  model::PrepareOptions o = options_for(dir + "/m.jsonl", dir + "/multi");
  o.model_dir = vitscuda::testing::data_path("golden/tiny_dp_multispeaker");
  o.eval_fraction = 0;
  const auto s = model::prepare_dataset(o);
  EXPECT_EQ(s.accepted, 2u);
  EXPECT_EQ(s.rejected_by_reason.at("speaker_out_of_range"), 2u);
  const io::DatasetReader r = io::DatasetReader::open(dir + "/multi/train.vcds");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r.item(0).speaker, 0);
  EXPECT_EQ(r.item(1).speaker, 2);

  // A single-speaker model accepts rows without a speaker or with speaker 0 only.
  model::PrepareOptions single = options_for(dir + "/m.jsonl", dir + "/single");
  single.eval_fraction = 0;
  const auto ss = model::prepare_dataset(single);
  EXPECT_EQ(ss.accepted, 2u);
  EXPECT_EQ(cache_ids(dir + "/single/train.vcds"), (std::set<std::string>{"wavs/s0", "wavs/none"}));
}

TEST(Prepare, RefusesToReplaceACacheOfAnotherTokenizerUnlessForced) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_overwrite");
  const std::string manifest = make_mixed_corpus(dir + "/corpus");
  model::prepare_dataset(options_for(manifest, dir + "/data"));
  // Same tokenizer: preparing again is fine.
  EXPECT_EQ(model::prepare_dataset(options_for(manifest, dir + "/data")).accepted, 5u);

  // Another tokenizer: the same files with two vocab ids swapped.
  const std::string other = dir + "/other_model";
  fs::create_directories(other);
  for (const char* f : {"config.json", "tokenizer_config.json"})
    fs::copy_file(fs::path(model_dir()) / f, fs::path(other) / f);
  nlohmann::ordered_json vocab = nlohmann::ordered_json::parse(model::read_file(model_dir() + "/vocab.json"));
  std::swap(vocab["a"], vocab["b"]);
  std::ofstream(other + "/vocab.json") << vocab.dump(2);
  EXPECT_NE(model::tokenizer_hash(other), model::tokenizer_hash(model_dir()));
  // Formatting alone does not change the identity.
  const std::string reformatted = dir + "/reformatted";
  fs::create_directories(reformatted);
  for (const char* f : {"config.json", "tokenizer_config.json"})
    fs::copy_file(fs::path(model_dir()) / f, fs::path(reformatted) / f);
  std::ofstream(reformatted + "/vocab.json")
      << nlohmann::ordered_json::parse(model::read_file(model_dir() + "/vocab.json")).dump();
  EXPECT_EQ(model::tokenizer_hash(reformatted), model::tokenizer_hash(model_dir()));

  model::PrepareOptions o = options_for(manifest, dir + "/data");
  o.model_dir = other;
  try {
    model::prepare_dataset(o);
    ADD_FAILURE() << "a cache of another tokenizer was replaced without --force";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
  }
  // Refused means untouched.
  EXPECT_EQ(io::DatasetReader::open(dir + "/data/train.vcds").tokenizer_hash(), model::tokenizer_hash(model_dir()));
  o.force = true;
  EXPECT_EQ(model::prepare_dataset(o).accepted, 5u);
  EXPECT_EQ(io::DatasetReader::open(dir + "/data/train.vcds").tokenizer_hash(), model::tokenizer_hash(other));
}

TEST(Prepare, RecordsTheTextFrontEndAndRefusesACacheOfAnotherByName) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_front_end");
  const std::string manifest = make_mixed_corpus(dir + "/corpus");
  // tiny_sdp with the vits-ljs-style phoneme tokenizer of tests/data/io/frontends (178 symbols).
  const std::string phonemes = dir + "/phoneme_model";
  fs::create_directories(phonemes);
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(model::read_file(model_dir() + "/config.json"));
  config["vocab_size"] = 178;
  std::ofstream(phonemes + "/config.json") << config.dump(2);
  for (const char* f : {"vocab.json", "tokenizer_config.json"})
    fs::copy_file(fs::path(vitscuda::testing::data_path("io/frontends/vits_ljs")) / f, fs::path(phonemes) / f);

  model::PrepareOptions o = options_for(manifest, dir + "/data");
  o.model_dir = phonemes;
  const model::PrepareSummary s = model::prepare_dataset(o);
  EXPECT_EQ(s.front_end, "phonemes");
  EXPECT_GE(s.accepted, 1u);
  const nlohmann::json j = nlohmann::json::parse(read_text(dir + "/data/prepare.json"));
  EXPECT_EQ(j.value("front_end", ""), "phonemes");
  // The text beside its phonemes; "Hello world" gives these in tests/data/io/frontend_cases.json.
  const std::string accepted_tsv = read_text(dir + "/data/accepted.tsv");
  EXPECT_NE(accepted_tsv.find("\ttext\tfront_end_text\tdropped_chars\n"), std::string::npos) << accepted_tsv;
  EXPECT_NE(accepted_tsv.find("\tHello world.\th\xC9\x99l\xCB\x88o\xCA\x8A w\xCB\x88\xC9\x9C\xCB\x90ld."),
            std::string::npos)
      << accepted_tsv;

  // The characters model's cache cannot replace it unnoticed: the message names both front-ends.
  try {
    model::prepare_dataset(options_for(manifest, dir + "/data"));
    ADD_FAILURE() << "a cache of another front-end was replaced without --force";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("text front-end phonemes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("uses characters"), std::string::npos) << e.what();
  }
  EXPECT_EQ(io::DatasetReader::open(dir + "/data/train.vcds").tokenizer_hash(), model::tokenizer_hash(phonemes));
}

TEST(Prepare, NothingAcceptedWritesOnlyTheRejections) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_all_bad");
  fs::create_directories(dir + "/wavs");
  io::write_wav(dir + "/wavs/quiet.wav", std::vector<float>(16000, 0.f), 16000);
  std::ofstream(dir + "/metadata.csv") << "quiet|silence|silence\nabsent|no file|no file\n";
  // A stale cache from an earlier run must not survive next to the new rejections.
  const std::string out = dir + "/data";
  fs::create_directories(out);
  {
    io::DatasetWriter w(out + "/train.vcds", 16000, model::tokenizer_hash(model_dir()));
    w.finish();
  }
  const auto s = model::prepare_dataset(options_for(dir + "/metadata.csv", out));
  EXPECT_EQ(s.accepted, 0u);
  EXPECT_FALSE(fs::exists(out + "/train.vcds"));
  EXPECT_FALSE(fs::exists(out + "/eval.vcds"));
  EXPECT_FALSE(fs::exists(out + "/prepare.json"));
  const auto rejected = read_rejected(out + "/rejected.tsv");
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_EQ(rejected.at("quiet").second, "silent");
  EXPECT_EQ(rejected.at("absent").second, "missing_file");
  // No temporary files left.
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Prepare, BadOptionsAndInputsAreErrors) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_bad_options");
  const std::string manifest = make_mixed_corpus(dir + "/corpus");
  model::PrepareOptions o = options_for(manifest, dir + "/data");
  o.eval_fraction = 1.0;
  EXPECT_THROW(model::prepare_dataset(o), Error);
  o = options_for(manifest, dir + "/data");
  o.min_seconds = 5;
  o.max_seconds = 1;
  EXPECT_THROW(model::prepare_dataset(o), Error);
  o = options_for(manifest, dir + "/data");
  o.model_dir = dir + "/no_such_model";
  EXPECT_THROW(model::prepare_dataset(o), Error);
  o = options_for(dir + "/no_such_manifest.csv", dir + "/data");
  EXPECT_THROW(model::prepare_dataset(o), Error);
  o = options_for(manifest, dir + "/data");
  o.segment_frames = -1;
  EXPECT_NE(vitscuda::testing::error_of([&] { model::prepare_dataset(o); }).find("--segment-frames"),
            std::string::npos);
}

namespace {

// Utterances around the training segment and the alignment limit, at 16 kHz (tiny_sdp's rate, so no
// resampling: hop 16 makes samples / 16 frames exactly). Texts of n letters make 2n + 1 tokens.
std::string make_segment_corpus(const std::string& dir) {
  fs::create_directories(dir + "/wavs");
  const std::string w = dir + "/wavs/";
  io::write_wav(w + "frames20.wav", speechlike(320.0 / 16000, 16000, 21), 16000);  // 20 frames
  io::write_wav(w + "frames31.wav", speechlike(511.0 / 16000, 16000, 22), 16000);  // 31 frames (15 samples spare)
  io::write_wav(w + "frames32.wav", speechlike(512.0 / 16000, 16000, 23), 16000);  // exactly 32 frames
  io::write_wav(w + "dense.wav", speechlike(640.0 / 16000, 16000, 24), 16000);     // 40 frames
  io::write_wav(w + "fits.wav", speechlike(640.0 / 16000, 16000, 25), 16000);      // 40 frames
  const std::string manifest = dir + "/metadata.csv";
  std::ofstream(manifest) << "frames20|a|a\n"
                          << "frames31|ab|ab\n"
                          << "frames32|ab|ab\n"
                          << "dense|abcdefghijklmnopqrst|abcdefghijklmnopqrst\n"  // 41 tokens for 40 frames
                          << "fits|abcdefghijklmnopqrs|abcdefghijklmnopqrs\n";    // 39 tokens for 40 frames
  return manifest;
}

}  // namespace

TEST(Prepare, RejectsUtterancesShorterThanTheSegmentOrWithMoreTokensThanFrames) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_segment");
  const std::string manifest = make_segment_corpus(dir + "/corpus");
  model::PrepareOptions o = options_for(manifest, dir + "/data");
  o.eval_fraction = 0;
  o.min_seconds = 0.01;
  ASSERT_EQ(o.segment_frames, 32) << "the default is the training's segment (train --segment-frames 32)";
  model::PrepareSummary s = model::prepare_dataset(o);
  std::map<std::string, std::string> reasons;
  for (const auto& [id, lr] : read_rejected(dir + "/data/rejected.tsv")) reasons[id] = lr.second;
  EXPECT_EQ(reasons, (std::map<std::string, std::string>{{"frames20", "shorter_than_segment"},
                                                          {"frames31", "shorter_than_segment"},
                                                          {"dense", "more_tokens_than_frames"}}));
  EXPECT_EQ(cache_ids(dir + "/data/train.vcds"), (std::set<std::string>{"frames32", "fits"}));
  for (const auto& r : s.rejected) {
    if (r.id == "frames31")
      EXPECT_NE(r.detail.find("31 frames, fewer than the 32-frame"), std::string::npos) << r.detail;
    if (r.id == "dense") EXPECT_NE(r.detail.find("41 tokens for 40 frames"), std::string::npos) << r.detail;
  }
  const nlohmann::json recorded = nlohmann::json::parse(read_text(dir + "/data/prepare.json"));
  EXPECT_EQ(recorded.at("options").at("segment_frames"), 32);

  // Without a segment minimum only the alignment limit remains.
  o.segment_frames = 0;
  o.out_dir = dir + "/data_no_segment";
  s = model::prepare_dataset(o);
  reasons.clear();
  for (const auto& [id, lr] : read_rejected(dir + "/data_no_segment/rejected.tsv")) reasons[id] = lr.second;
  EXPECT_EQ(reasons, (std::map<std::string, std::string>{{"dense", "more_tokens_than_frames"}}));
  EXPECT_EQ(s.accepted, 4u);
}

TEST(PrepareCli, SegmentFramesOptionSetsTheMinimum) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_cli_segment");
  const std::string manifest = make_segment_corpus(dir + "/corpus");
  const std::string bin = vitscuda::testing::binary_path("vitscuda");
  const RunResult r = run(bin + " prepare --manifest " + manifest + " --model " + model_dir() + " --out " + dir +
                          "/data --eval-fraction 0 --min-seconds 0.01 --segment-frames 21");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("shorter_than_segment"), std::string::npos) << r.output;
  std::map<std::string, std::string> reasons;
  for (const auto& [id, lr] : read_rejected(dir + "/data/rejected.tsv")) reasons[id] = lr.second;
  EXPECT_EQ(reasons, (std::map<std::string, std::string>{{"frames20", "shorter_than_segment"},
                                                          {"dense", "more_tokens_than_frames"}}));
  EXPECT_EQ(cache_ids(dir + "/data/train.vcds"), (std::set<std::string>{"frames31", "frames32", "fits"}));
}

TEST(PrepareCli, EndToEndWritesRejectionsAndExitsZero) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_cli");
  const std::string manifest = make_mixed_corpus(dir + "/corpus");
  const std::string bin = vitscuda::testing::binary_path("vitscuda");
  const RunResult r = run(bin + " prepare --manifest " + manifest + " --audio-dir " + dir + "/corpus --model " +
                          model_dir() + " --out " + dir + "/data --eval-fraction 0.3");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("accepted"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unreadable_audio"), std::string::npos) << r.output;
  std::map<std::string, std::string> reasons;
  for (const auto& [id, lr] : read_rejected(dir + "/data/rejected.tsv"))
    if (!id.empty()) reasons[id] = lr.second;
  EXPECT_EQ(reasons, expect_rejected);
  const size_t train = io::DatasetReader::open(dir + "/data/train.vcds").size();
  const size_t eval = io::DatasetReader::open(dir + "/data/eval.vcds").size();
  EXPECT_EQ(train + eval, expect_accepted.size());
  EXPECT_GE(eval, 1u);
  EXPECT_GE(train, 1u);

  // Options are checked: an unknown format is refused with its name.
  const RunResult bad = run(bin + " prepare --manifest " + manifest + " --model " + model_dir() + " --out " + dir +
                            "/data2 --format xml");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("xml"), std::string::npos) << bad.output;
}

TEST(PrepareCli, EverySampleBadExitsNonZero) {
  const std::string dir = vitscuda::testing::temp_dir("prepare_cli_all_bad");
  fs::create_directories(dir + "/wavs");
  io::write_wav(dir + "/wavs/a.wav", std::vector<float>(16000, 0.f), 16000);
  io::write_wav(dir + "/wavs/b.wav", speechlike(0.1, 16000, 1), 16000);
  std::ofstream(dir + "/metadata.csv") << "a|silence|silence\nb|short|short\nc|missing|missing\n";
  const std::string bin = vitscuda::testing::binary_path("vitscuda");
  const RunResult r =
      run(bin + " prepare --manifest " + dir + "/metadata.csv --model " + model_dir() + " --out " + dir + "/data");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("nothing accepted"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rejected.tsv"), std::string::npos) << r.output;
  const auto rejected = read_rejected(dir + "/data/rejected.tsv");
  ASSERT_EQ(rejected.size(), 3u);
  EXPECT_EQ(rejected.at("a").second, "silent");
  EXPECT_EQ(rejected.at("b").second, "too_short");
  EXPECT_EQ(rejected.at("c").second, "missing_file");
}

TEST(PrepareCli, DemoCorpusScriptMakesAPreparableCorpus) {
  if (run("command -v espeak-ng").status != 0) GTEST_SKIP() << "espeak-ng is not installed";
  const std::string dir = vitscuda::testing::temp_dir("prepare_demo_corpus");
  const std::string script = vitscuda::testing::source_dir() + "/scripts/make_demo_corpus.sh";
  const RunResult made = run(script + " " + dir + "/corpus 6");
  ASSERT_EQ(made.status, 0) << made.output;
  const std::string metadata = read_text(dir + "/corpus/metadata.csv");
  EXPECT_EQ(std::count(metadata.begin(), metadata.end(), '\n'), 6);
  // Deterministic: a second run writes the same manifest.
  ASSERT_EQ(run(script + " " + dir + "/again 6").status, 0);
  EXPECT_EQ(read_text(dir + "/again/metadata.csv"), metadata);
  const io::Audio first = io::read_audio(dir + "/corpus/wavs/demo_0001.wav");
  EXPECT_EQ(first.sample_rate, 22050);

  model::PrepareOptions o = options_for(dir + "/corpus/metadata.csv", dir + "/data");
  const model::PrepareSummary s = model::prepare_dataset(o);
  EXPECT_EQ(s.accepted, 6u) << model::format_prepare_summary(s);
  EXPECT_EQ(s.eval_items, 1u);  // the hash holds out none of these 6 ids at 2%; the rule keeps one
  EXPECT_EQ(s.sample_rate, 16000);
}
