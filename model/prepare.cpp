#include "model/prepare.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "io/audio.h"
#include "io/dataset.h"
#include "io/hf_config.h"
#include "io/phonemizer.h"
#include "io/tokenizer.h"
#include "io/unicode_text.h"
#include "model/alignment.h"
#include "model/model_dir.h"

namespace fs = std::filesystem;

namespace vitscuda::model {

namespace {

// Silence thresholds, on [-1, 1] samples after resampling. One step of 16-bit PCM is
// 2^-15 = 3.05e-5, and rounding noise has an RMS of that step / sqrt(12) = 8.8e-6. A peak under
// 1e-4 (-80 dBFS, about 3 PCM steps) is digital silence or dither; an RMS under 1e-5 (-100 dBFS) is
// no louder than 16-bit rounding noise, i.e. at most a few isolated clicks in silence. Real
// recordings, even quiet ones, sit tens of dB above both, so neither rejects usable speech.
constexpr float kSilentPeak = 1e-4f;
constexpr double kSilentRms = 1e-5;

uint64_t fnv1a64(const std::string& s, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// Maps an id to [0, 1): FNV-1a then the splitmix64 finaliser, so ids differing in one
// character land far apart.
double eval_key(const std::string& id) {
  uint64_t z = fnv1a64(id) + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string iso_utc(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
}

// Offset of the first byte that breaks UTF-8, or npos.
size_t invalid_utf8_at(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    const int extra = b < 0x80 ? 0 : (b & 0xE0) == 0xC0 ? 1 : (b & 0xF0) == 0xE0 ? 2 : (b & 0xF8) == 0xF0 ? 3 : -1;
    if (extra < 0 || i + static_cast<size_t>(extra) >= s.size()) return i;  // bad lead byte or cut short
    for (int k = 1; k <= extra; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return i;
    i += static_cast<size_t>(extra) + 1;
  }
  return std::string::npos;
}

// One field of a TSV output line: tabs and line breaks would break the columns.
std::string tsv_field(const std::string& s) {
  std::string out = s;
  for (char& c : out)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return out;
}

std::string format_seconds(double s) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(s < 10 ? 2 : 1);
  os << s << " s";
  return os.str();
}

std::string hours_minutes(double seconds) {
  const long total = std::lround(seconds);
  std::ostringstream os;
  os << total / 3600 << " h " << (total % 3600) / 60 << " m";
  if (total < 3600) os << " " << total % 60 << " s";
  return os.str();
}

struct Context {
  const io::Tokenizer* tokenizer = nullptr;
  int sample_rate = 0, hop = 0, num_speakers = 1, vocab_size = 0;
  double min_seconds = 0, max_seconds = 0;
  int segment_frames = 0;
};

struct Outcome {
  bool accepted = false;
  std::string reason, detail;
  std::string fatal;  // a problem with the model or the machine, not with this row
  std::vector<int32_t> ids;
  std::vector<float> samples;
  std::vector<std::string> dropped;
  std::string front_end_text;
};

// `front_end_text`: the row's text after the tokenizer's front-end (Tokenizer::front_end_texts), computed for
// all rows at once.
Outcome examine(const io::ManifestEntry& e, const std::string& front_end_text, const Context& ctx) {
  Outcome o;
  auto reject = [&o](const char* reason, std::string detail) {
    o.reason = reason;
    o.detail = std::move(detail);
    return o;
  };
  if (ctx.num_speakers > 1) {
    if (e.speaker < 0)
      return reject("speaker_out_of_range",
                    "the model has " + std::to_string(ctx.num_speakers) + " speakers and the row names none");
    if (e.speaker >= ctx.num_speakers)
      return reject("speaker_out_of_range", "speaker " + std::to_string(e.speaker) + ", the model has " +
                                                std::to_string(ctx.num_speakers) + " speakers (0.." +
                                                std::to_string(ctx.num_speakers - 1) + ")");
  } else if (e.speaker > 0) {
    return reject("speaker_out_of_range",
                  "speaker " + std::to_string(e.speaker) + ", but the model has a single speaker");
  }

  if (is_blank(e.text)) return reject("empty_text", "the text is empty");
  const size_t bad = invalid_utf8_at(e.text);
  if (bad != std::string::npos) return reject("bad_text", "not valid UTF-8 at byte " + std::to_string(bad));
  io::TokenizerResult tokens;
  try {
    tokens = ctx.tokenizer->encode_front_end_text(front_end_text, e.text);
  } catch (const Error& err) {
    return reject("no_vocab_chars", err.what());
  }
  for (int32_t id : tokens.ids)
    if (id < 0 || id >= ctx.vocab_size) {
      o.fatal = "the tokenizer produced id " + std::to_string(id) + " but config.json has vocab_size " +
                std::to_string(ctx.vocab_size) + ": the model directory's vocab.json and config.json disagree";
      return o;
    }

  std::error_code ec;
  if (!fs::exists(e.audio_path, ec)) return reject("missing_file", "no file at " + e.audio_path);
  if (!fs::is_regular_file(e.audio_path, ec)) return reject("unreadable_audio", e.audio_path + " is not a file");
  io::Audio audio;
  try {
    audio = io::read_audio(e.audio_path);
  } catch (const Error& err) {
    return reject("unreadable_audio", err.what());
  }
  for (size_t i = 0; i < audio.samples.size(); ++i)
    if (!std::isfinite(audio.samples[i]))
      return reject("non_finite", "sample " + std::to_string(i) + " of " + std::to_string(audio.samples.size()) +
                                      " is " + (std::isnan(audio.samples[i]) ? "NaN" : "infinite"));
  const double seconds = static_cast<double>(audio.samples.size()) / audio.sample_rate;
  if (seconds > ctx.max_seconds)
    return reject("too_long", format_seconds(seconds) + ", over --max-seconds " + format_seconds(ctx.max_seconds));
  if (seconds < ctx.min_seconds)
    return reject("too_short", format_seconds(seconds) + ", under --min-seconds " + format_seconds(ctx.min_seconds));
  std::vector<float> samples = io::resample(audio.samples, audio.sample_rate, ctx.sample_rate);

  float peak = 0;
  double sum_sq = 0;
  for (float s : samples) {
    peak = std::max(peak, std::fabs(s));
    sum_sq += static_cast<double>(s) * s;
  }
  const double rms = samples.empty() ? 0.0 : std::sqrt(sum_sq / static_cast<double>(samples.size()));
  if (peak < kSilentPeak || rms < kSilentRms) {
    std::ostringstream os;
    os.precision(3);
    os << "peak " << peak << ", RMS " << rms << " (thresholds " << kSilentPeak << ", " << kSilentRms << ")";
    return reject("silent", os.str());
  }
  // Training's spectrogram has one frame per `hop` samples (a partial last hop gives none).
  const int64_t frames = static_cast<int64_t>(samples.size() / static_cast<size_t>(ctx.hop));
  const AlignabilityProblem problem =
      alignability_problem(static_cast<int64_t>(tokens.ids.size()), frames, ctx.segment_frames);
  if (!problem.reason.empty())
    return reject(problem.reason.c_str(), problem.detail + " (frames of " + std::to_string(ctx.hop) + " samples)");
  o.accepted = true;
  o.ids = std::move(tokens.ids);
  o.samples = std::move(samples);
  o.dropped = std::move(tokens.dropped);
  o.front_end_text = std::move(tokens.front_end_text);
  return o;
}

struct AcceptedRow {
  std::string id;
  int line;
  bool eval;
  double seconds;
  size_t tokens;
  int speaker;
  std::string text, front_end_text;
  std::string dropped;
};

// Moves item `index` of the cache at `from` into the (empty) cache at `to`; both are rewritten.
void move_item(const std::string& from, size_t index, const std::string& to, int sample_rate, uint64_t hash) {
  const io::DatasetReader source = io::DatasetReader::open(from);
  io::DatasetWriter rest(from, sample_rate, hash);
  io::DatasetWriter target(to, sample_rate, hash);
  for (size_t i = 0; i < source.size(); ++i) {
    const io::DatasetItemView v = source.view(i);
    (i == index ? target : rest).add(v.id, v.speaker, v.ids, v.num_ids, v.samples, v.num_samples);
  }
  rest.finish();
  target.finish();
}

// Refuses to replace caches made with another tokenizer unless forced; names the front-ends when they differ.
void check_overwrite(const std::string& out, uint64_t hash, bool force, const std::string& model_dir,
                     const io::Tokenizer& tokenizer) {
  std::string stored_front_end;
  std::vector<std::string> conflicts;
  for (const char* name : {"train.vcds", "eval.vcds"}) {
    const std::string p = (fs::path(out) / name).string();
    if (!fs::exists(p)) continue;
    try {
      const io::DatasetReader r = io::DatasetReader::open(p, io::DatasetVerify::HeaderOnly);
      if (r.tokenizer_hash() != hash)
        conflicts.push_back(std::string(name) + " (tokenizer " + hex64(r.tokenizer_hash()) + ")");
    } catch (const Error&) {
      // A damaged cache holds nothing worth keeping: it is replaced.
    }
  }
  const std::string json_path = (fs::path(out) / "prepare.json").string();
  if (fs::exists(json_path)) {
    try {
      const nlohmann::json j = nlohmann::json::parse(read_file(json_path));
      const std::string stored = j.value("tokenizer_hash", "");
      // Caches from before the front-ends were recorded hold character tokens.
      stored_front_end = j.value("front_end", io::front_end_name(io::FrontEnd::Characters));
      if (stored != hex64(hash)) conflicts.push_back("prepare.json (tokenizer " + stored + ")");
    } catch (const std::exception&) {
    }
  }
  if (conflicts.empty() || force) return;
  std::string list;
  for (const auto& c : conflicts) list += (list.empty() ? "" : ", ") + c;
  const std::string front_end = io::front_end_name(tokenizer.front_end());
  const std::string front_ends =
      !stored_front_end.empty() && stored_front_end != front_end
          ? " (text front-end " + stored_front_end + "; " + model_dir + " uses " + front_end + ")"
          : "";
  VC_FAIL(out << " holds data prepared with a different tokenizer" << front_ends << ": " << list << "; the tokenizer of "
              << model_dir << " is " << hex64(hash) << ". Pass --force to replace it, or choose another --out");
}

}  // namespace

uint64_t tokenizer_hash(const std::string& model_dir) {
  const fs::path vocab_path = fs::path(model_dir) / "vocab.json";
  VC_CHECK(fs::exists(vocab_path), model_dir << " has no vocab.json");
  nlohmann::ordered_json vocab;
  try {
    vocab = nlohmann::ordered_json::parse(read_file(vocab_path.string()));
  } catch (const nlohmann::json::exception& e) {
    VC_FAIL(vocab_path.string() << " is not valid JSON: " << e.what());
  }
  nlohmann::ordered_json settings = nlohmann::ordered_json::object();
  const fs::path config_path = fs::path(model_dir) / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    nlohmann::ordered_json config;
    try {
      config = nlohmann::ordered_json::parse(read_file(config_path.string()));
    } catch (const nlohmann::json::exception& e) {
      VC_FAIL(config_path.string() << " is not valid JSON: " << e.what());
    }
    for (const char* key : {"add_blank", "normalize", "pad_token", "unk_token", "language", "phonemize", "is_uroman"})
      if (config.contains(key)) settings[key] = config[key];
    // Another espeak-ng may phonemise differently.
    if (settings.contains("phonemize") && settings["phonemize"].is_boolean() && settings["phonemize"].get<bool>())
      settings["espeak_ng"] = io::espeak_ng_version();
  }
  return fnv1a64(settings.dump(), fnv1a64(vocab.dump() + "\n"));
}

namespace {

void check_prepare_options(const PrepareOptions& opt) {
  VC_CHECK(!opt.manifest.empty(), "prepare: no manifest given");
  VC_CHECK(!opt.out_dir.empty(), "prepare: no output directory given");
  VC_CHECK(opt.eval_fraction >= 0 && opt.eval_fraction < 1,
           "prepare: --eval-fraction must be in [0, 1), got " << opt.eval_fraction);
  VC_CHECK(opt.min_seconds >= 0 && opt.max_seconds > opt.min_seconds,
           "prepare: need 0 <= --min-seconds < --max-seconds, got " << opt.min_seconds << " and " << opt.max_seconds);
  VC_CHECK(opt.threads >= 1, "prepare: --threads must be at least 1, got " << opt.threads);
  VC_CHECK(opt.segment_frames >= 0, "prepare: --segment-frames must be at least 0, got " << opt.segment_frames);
}

io::VitsConfig read_model_config(const std::string& model_dir) {
  VC_CHECK(fs::is_directory(model_dir), "model directory " << model_dir << " does not exist");
  const std::string config_path = (fs::path(model_dir) / "config.json").string();
  VC_CHECK(fs::exists(config_path), model_dir << " has no config.json");
  return io::VitsConfig::from_file(config_path);
}

std::string audio_dir_of(const PrepareOptions& opt) {
  const std::string audio_dir =
      opt.audio_dir.empty() ? fs::absolute(opt.manifest).parent_path().string() : opt.audio_dir;
  VC_CHECK(fs::is_directory(audio_dir), "audio directory " << audio_dir << " does not exist");
  return audio_dir;
}

// One preparation, step by step: the constructor checks the inputs and opens OUT; examine_manifest()
// fills the caches; the write_* steps produce the other outputs.
class Preparation {
 public:
  explicit Preparation(const PrepareOptions& opt)
      : opt_(opt),
        start_(std::chrono::steady_clock::now()),
        config_(read_model_config(opt.model_dir)),
        tokenizer_(io::Tokenizer::from_dir(opt.model_dir)),
        hash_(tokenizer_hash(opt.model_dir)),
        audio_dir_(audio_dir_of(opt)),
        manifest_(io::read_manifest(opt.manifest, audio_dir_, opt.format)),
        out_(opt.out_dir),
        train_path_((out_ / "train.vcds").string()),
        eval_path_((out_ / "eval.vcds").string()) {
    fs::create_directories(opt.out_dir);
    check_overwrite(opt.out_dir, hash_, opt.force, opt.model_dir, tokenizer_);
    // A run that dies half way must not leave the old summary describing new caches.
    fs::remove(out_ / "prepare.json");
    start_summary();
    train_ = std::make_unique<io::DatasetWriter>(train_path_, config_.sampling_rate, hash_);
    eval_ = std::make_unique<io::DatasetWriter>(eval_path_, config_.sampling_rate, hash_);
  }

  // Examines the rows in parallel chunks and adds each accepted one to its split, in manifest order,
  // until the manifest or --max-samples ends.
  void examine_manifest() {
    const Context ctx = examination_context();
    compute_front_end_texts();
    const size_t chunk = static_cast<size_t>(opt_.threads) * 16;
    size_t next = 0;
    auto last_report = start_;
    while (next < manifest_.entries.size() && (opt_.max_samples == 0 || accepted_.size() < opt_.max_samples)) {
      size_t n = std::min(chunk, manifest_.entries.size() - next);
      if (opt_.max_samples) n = std::min(n, std::max<size_t>(opt_.max_samples - accepted_.size(), opt_.threads));
      const std::vector<Outcome> outcomes = examine_rows(ctx, next, n);
      for (size_t k = 0; k < n; ++k) {
        if (opt_.max_samples && accepted_.size() >= opt_.max_samples) break;
        record(manifest_.entries[next + k], outcomes[k]);
      }
      next += n;
      const auto now = std::chrono::steady_clock::now();
      if (opt_.progress && now - last_report > std::chrono::seconds(5)) {
        std::fprintf(opt_.progress, "prepare: %zu/%zu rows examined, %zu accepted\n", sum_.examined,
                     manifest_.entries.size(), accepted_.size());
        std::fflush(opt_.progress);
        last_report = now;
      }
    }
    sum_.accepted = accepted_.size();
  }

  // rejected.tsv, sorted by manifest line; also the per-reason counts of the summary.
  void write_rejected_tsv() {
    std::stable_sort(sum_.rejected.begin(), sum_.rejected.end(),
                     [](const PrepareRejection& a, const PrepareRejection& b) { return a.line < b.line; });
    for (const auto& r : sum_.rejected) ++sum_.rejected_by_reason[r.reason];
    std::ostringstream rejected_tsv;
    rejected_tsv << "id\tline\tpath\treason\tdetail\n";
    for (const auto& r : sum_.rejected)
      rejected_tsv << tsv_field(r.id) << '\t' << r.line << '\t' << tsv_field(r.path) << '\t' << r.reason << '\t'
                   << tsv_field(r.detail) << '\n';
    write_file_atomic((out_ / "rejected.tsv").string(), rejected_tsv.str());
  }

  bool nothing_accepted() const { return accepted_.empty(); }

  // Nothing accepted: no cache is written and the outputs of an earlier run are removed.
  PrepareSummary discard_caches() {
    train_.reset();
    eval_.reset();
    for (const char* stale : {"train.vcds", "eval.vcds", "accepted.tsv"}) fs::remove(out_ / stale);
    sum_.elapsed_seconds = elapsed();
    return sum_;
  }

  // Writes both caches; with eval_fraction > 0 and at least 2 utterances, each split gets at least one.
  void finish_caches() {
    const size_t eval_count = eval_->size(), train_count = train_->size();
    train_->finish();
    eval_->finish();
    if (accepted_.size() >= 2 && opt_.eval_fraction > 0 && eval_count == 0) {
      move_item(train_path_, min_key_train_, eval_path_, config_.sampling_rate, hash_);
      size_t seen = 0;
      for (auto& a : accepted_)
        if (!a.eval && seen++ == min_key_train_) a.eval = true;
    } else if (accepted_.size() >= 2 && train_count == 0) {
      move_item(eval_path_, max_key_eval_, train_path_, config_.sampling_rate, hash_);
      size_t seen = 0;
      for (auto& a : accepted_)
        if (a.eval && seen++ == max_key_eval_) a.eval = false;
    }
    for (const auto& a : accepted_) {
      (a.eval ? sum_.eval_items : sum_.train_items) += 1;
      (a.eval ? sum_.eval_seconds : sum_.train_seconds) += a.seconds;
    }
  }

  void write_accepted_tsv() const {
    std::ostringstream accepted_tsv;
    accepted_tsv << "id\tline\tsplit\tseconds\ttokens\tspeaker\ttext\tfront_end_text\tdropped_chars\n";
    for (const auto& a : accepted_) {
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%.3f", a.seconds);
      accepted_tsv << tsv_field(a.id) << '\t' << a.line << '\t' << (a.eval ? "eval" : "train") << '\t' << seconds
                   << '\t' << a.tokens << '\t' << a.speaker << '\t' << tsv_field(a.text) << '\t'
                   << tsv_field(a.front_end_text) << '\t' << tsv_field(a.dropped) << '\n';
    }
    write_file_atomic((out_ / "accepted.tsv").string(), accepted_tsv.str());
  }

  // prepare.json, written last: its presence says the caches beside it are complete.
  PrepareSummary write_prepare_json() {
    sum_.elapsed_seconds = elapsed();
    struct stat st {};
    ::stat(opt_.manifest.c_str(), &st);
    nlohmann::ordered_json j;
    j["format"] = "vitscuda-prepare";
    j["version"] = 1;
    j["created"] = iso_utc(std::time(nullptr));
    j["manifest"] = {{"path", sum_.manifest_path},
                     {"format", sum_.manifest_format},
                     {"size_bytes", static_cast<uint64_t>(st.st_size)},
                     {"mtime", iso_utc(st.st_mtime)},
                     {"rows", sum_.manifest_rows}};
    j["audio_dir"] = fs::absolute(audio_dir_).lexically_normal().string();
    j["model_dir"] = sum_.model_dir;
    j["tokenizer_hash"] = hex64(hash_);
    j["front_end"] = io::front_end_name(tokenizer_.front_end());
    j["sample_rate"] = sum_.sample_rate;
    j["hop_length"] = sum_.hop;
    j["num_speakers"] = config_.num_speakers;
    j["options"] = {{"max_samples", opt_.max_samples},
                    {"eval_fraction", opt_.eval_fraction},
                    {"min_seconds", opt_.min_seconds},
                    {"max_seconds", opt_.max_seconds},
                    {"segment_frames", opt_.segment_frames}};
    j["examined"] = sum_.examined;
    j["accepted"] = sum_.accepted;
    j["total_seconds"] = sum_.train_seconds + sum_.eval_seconds;
    j["train"] = {{"file", "train.vcds"}, {"items", sum_.train_items}, {"seconds", sum_.train_seconds}};
    j["eval"] = {{"file", "eval.vcds"}, {"items", sum_.eval_items}, {"seconds", sum_.eval_seconds}};
    j["rejected"] = {{"total", sum_.rejected.size()}, {"by_reason", sum_.rejected_by_reason}, {"file", "rejected.tsv"}};
    j["dropped_characters"] = {{"utterances", sum_.utterances_with_dropped_chars},
                               {"by_character", sum_.dropped_chars}};
    j["elapsed_seconds"] = sum_.elapsed_seconds;
    write_file_atomic((out_ / "prepare.json").string(), j.dump(2) + "\n");
    return sum_;
  }

 private:
  void start_summary() {
    sum_.manifest_path = fs::absolute(opt_.manifest).lexically_normal().string();
    sum_.manifest_format = io::manifest_format_name(manifest_.format);
    sum_.out_dir = opt_.out_dir;
    sum_.model_dir = fs::absolute(opt_.model_dir).lexically_normal().string();
    sum_.manifest_rows = manifest_.entries.size() + manifest_.rejected.size();
    sum_.parsed_rows = manifest_.entries.size();
    sum_.sample_rate = config_.sampling_rate;
    sum_.hop = config_.total_upsample();
    sum_.tokenizer_hash = hash_;
    sum_.front_end = io::front_end_name(tokenizer_.front_end());
    for (const auto& r : manifest_.rejected) sum_.rejected.push_back({r.id, r.line, r.path, r.reason, r.detail});
  }

  // Every row's text through the tokenizer's front-end in one batch (uroman runs once for the corpus). Rows
  // whose text is not valid UTF-8 get none: examine() rejects them first.
  void compute_front_end_texts() {
    std::vector<std::string> texts;
    std::vector<size_t> rows;
    for (size_t i = 0; i < manifest_.entries.size(); ++i) {
      const std::string& text = manifest_.entries[i].text;
      if (is_blank(text) || invalid_utf8_at(text) != std::string::npos) continue;
      try {
        io::decode_utf8(text, "text");
      } catch (const Error&) {
        continue;
      }
      texts.push_back(text);
      rows.push_back(i);
    }
    if (tokenizer_.front_end() != io::FrontEnd::Characters && opt_.progress) {
      std::fprintf(opt_.progress, "prepare: %zu texts through the %s front-end\n", texts.size(),
                   tokenizer_.front_end_description().c_str());
      std::fflush(opt_.progress);
    }
    std::vector<std::string> front = tokenizer_.front_end_texts(texts);
    front_end_texts_.assign(manifest_.entries.size(), std::string());
    for (size_t k = 0; k < rows.size(); ++k) front_end_texts_[rows[k]] = std::move(front[k]);
  }

  Context examination_context() const {
    Context ctx;
    ctx.tokenizer = &tokenizer_;
    ctx.sample_rate = config_.sampling_rate;
    ctx.hop = config_.total_upsample();
    ctx.num_speakers = config_.num_speakers;
    ctx.vocab_size = config_.vocab_size;
    ctx.min_seconds = opt_.min_seconds;
    ctx.max_seconds = opt_.max_seconds;
    ctx.segment_frames = opt_.segment_frames;
    return ctx;
  }

  // Rows [first, first + n), examined on opt.threads threads.
  std::vector<Outcome> examine_rows(const Context& ctx, size_t first, size_t n) const {
    std::vector<Outcome> outcomes(n);
#pragma omp parallel for num_threads(opt_.threads) schedule(dynamic, 1)
    for (long k = 0; k < static_cast<long>(n); ++k) {
      try {
        outcomes[k] = examine(manifest_.entries[first + k], front_end_texts_[first + k], ctx);
      } catch (const std::exception& e) {
        outcomes[k].fatal = std::string("while preparing ") + manifest_.entries[first + k].audio_path + ": " + e.what();
      }
    }
    return outcomes;
  }

  // A row's outcome into the summary, and an accepted row into its split's cache.
  void record(const io::ManifestEntry& e, const Outcome& o) {
    VC_CHECK(o.fatal.empty(), o.fatal);
    ++sum_.examined;
    if (!o.accepted) {
      sum_.rejected.push_back({e.id, e.line, e.audio_path, o.reason, o.detail});
      return;
    }
    const int speaker = config_.num_speakers > 1 ? e.speaker : -1;
    const double key = eval_key(e.id);
    const bool to_eval = key < opt_.eval_fraction;
    const double seconds = static_cast<double>(o.samples.size()) / config_.sampling_rate;
    // Candidates for the at-least-one-item rule: the train item closest to the eval side and the
    // eval item closest to the train side.
    if (to_eval) {
      if (key > max_key_) {
        max_key_ = key;
        max_key_eval_ = eval_->size();
      }
      eval_->add(e.id, speaker, o.ids.data(), o.ids.size(), o.samples.data(), o.samples.size());
    } else {
      if (key < min_key_) {
        min_key_ = key;
        min_key_train_ = train_->size();
      }
      train_->add(e.id, speaker, o.ids.data(), o.ids.size(), o.samples.data(), o.samples.size());
    }
    std::string dropped;
    for (const auto& c : o.dropped) {
      dropped += c;
      ++sum_.dropped_chars[c];
    }
    if (!o.dropped.empty()) ++sum_.utterances_with_dropped_chars;
    accepted_.push_back({e.id, e.line, to_eval, seconds, o.ids.size(), speaker, e.text, o.front_end_text, dropped});
  }

  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  const PrepareOptions& opt_;
  const std::chrono::steady_clock::time_point start_;
  const io::VitsConfig config_;
  const io::Tokenizer tokenizer_;
  const uint64_t hash_;
  const std::string audio_dir_;
  const io::Manifest manifest_;
  const fs::path out_;
  const std::string train_path_, eval_path_;
  PrepareSummary sum_;
  std::unique_ptr<io::DatasetWriter> train_, eval_;
  std::vector<AcceptedRow> accepted_;
  std::vector<std::string> front_end_texts_;  // per manifest entry
  size_t min_key_train_ = 0, max_key_eval_ = 0;
  double min_key_ = 2, max_key_ = -1;
};

}  // namespace

PrepareSummary prepare_dataset(const PrepareOptions& opt) {
  check_prepare_options(opt);
  Preparation preparation(opt);
  preparation.examine_manifest();
  preparation.write_rejected_tsv();
  if (preparation.nothing_accepted()) return preparation.discard_caches();
  preparation.finish_caches();
  preparation.write_accepted_tsv();
  return preparation.write_prepare_json();
}

std::string format_prepare_summary(const PrepareSummary& s) {
  std::ostringstream os;
  os << "prepare: " << s.manifest_rows << " rows in " << s.manifest_path << " (" << s.manifest_format << ")\n";
  os << "  model " << s.model_dir << ": " << s.sample_rate << " Hz, hop " << s.hop << ", tokenizer "
     << hex64(s.tokenizer_hash) << " (" << s.front_end << " front-end)\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-22s %6zu  (%s of audio; train %zu, eval %zu)\n", "accepted", s.accepted,
                hours_minutes(s.train_seconds + s.eval_seconds).c_str(), s.train_items, s.eval_items);
  os << line;
  std::snprintf(line, sizeof line, "  %-22s %6zu\n", "rejected", s.rejected.size());
  os << line;
  for (const auto& [reason, count] : s.rejected_by_reason) {
    std::string examples;
    size_t shown = 0;
    for (const auto& r : s.rejected) {
      if (r.reason != reason) continue;
      if (shown == 3) {
        examples += ", ...";
        break;
      }
      examples += (shown++ ? ", " : "") + (r.id.empty() ? "line " + std::to_string(r.line) : r.id);
    }
    std::snprintf(line, sizeof line, "    %-20s %6zu  ", reason.c_str(), count);
    os << line << examples << "\n";
  }
  if (s.examined < s.parsed_rows)
    os << "  stopped after " << s.accepted << " accepted (--max-samples): " << s.parsed_rows - s.examined
       << " rows not examined\n";
  if (s.utterances_with_dropped_chars > 0) {
    os << "  characters not in the vocabulary, dropped (the utterances are kept; see accepted.tsv): ";
    bool first = true;
    for (const auto& [c, count] : s.dropped_chars) {
      os << (first ? "" : ", ") << '"' << c << "\" in " << count;
      first = false;
    }
    os << "\n";
  }
  os << "  output in " << s.out_dir << ": "
     << (s.accepted > 0 ? "train.vcds, eval.vcds, accepted.tsv, rejected.tsv, prepare.json" : "rejected.tsv only")
     << " (" << format_seconds(s.elapsed_seconds) << ")\n";
  return os.str();
}

}  // namespace vitscuda::model
