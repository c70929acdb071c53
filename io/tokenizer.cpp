// Mirrors transformers' VitsTokenizer (tokenization_vits.py, prepare_for_tokenization and tokenize):
//   1. normalize_text: at each position the first vocab key (vocab.json order, then the
//      special tokens) matching the text there is kept verbatim; otherwise the single
//      character is lowercased with Python's str.lower() (tables in unicode_tables.inc
//      cover all of Unicode as Python 3.11 does, one character at a time);
//   2. the front-end: is_uroman=true romanises a text holding a non-ASCII character with uroman
//      (io/uroman.h); phonemize=true turns it into espeak-ng phonemes (io/phonemizer.h, language
//      "en-us" whatever tokenizer_config.json says, as transformers passes);
//   3. characters whose single-character string is not a vocab key are dropped (transformers drops them
//      only when normalising without phonemes; otherwise it maps them to unk_token's id, or to None when
//      the vocab has no unk_token: here the unk_token's id too when it is in the vocab, else dropped);
//   4. Python str.strip() (Unicode whitespace), when normalising without phonemes;
//   5. the text is split at the special tokens that are vocab keys (pad "k" for mms-tts):
//      transformers emits such a token alone, without blanks around it, so a text that
//      starts or ends with "k" gets one blank fewer there; every other piece becomes
//      [blank, c1, blank, c2, ..., blank] with blank = id 0.
#include "io/tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "common/error.h"
#include "io/json_input.h"
#include "io/phonemizer.h"
#include "io/unicode_text.h"
#include "io/uroman.h"

namespace vitscuda::io {

namespace {

using ordered_json = nlohmann::ordered_json;

// transformers' has_non_roman_characters: any character outside ASCII.
bool has_non_ascii(const std::u32string& s) {
  return std::any_of(s.begin(), s.end(), [](char32_t c) { return c > 0x7F; });
}

// The language transformers passes to phonemizer, whatever tokenizer_config.json says.
const char* const kPhonemizerLanguage = "en-us";

std::string quoted_list(const std::vector<std::string>& items) {
  std::ostringstream os;
  for (size_t i = 0; i < items.size(); ++i) os << (i ? ", " : "") << '"' << items[i] << '"';
  return os.str();
}

ordered_json read_json_file(const std::string& path) {
  std::ifstream in(path);
  VC_CHECK(in, path << ": cannot open: " << std::strerror(errno));
  try {
    return parse_json_input<ordered_json>(path, in);
  } catch (const nlohmann::json::exception& e) {
    VC_FAIL(path << ": not valid JSON: " << e.what());
  }
}

// A special token is written either as a string or as an AddedToken-like object {"content": ...}.
std::string token_string(const ordered_json& v, const std::string& path, const char* field) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  VC_FAIL(path << ": field '" << field << "' must be a string or an object with a string \"content\", got "
               << v.dump());
}

bool read_bool(const ordered_json& config, const char* field, bool fallback, const std::string& path) {
  if (!config.contains(field) || config[field].is_null()) return fallback;
  VC_CHECK(config[field].is_boolean(),
           path << ": field '" << field << "' must be a boolean, got " << config[field].type_name());
  return config[field].get<bool>();
}

}  // namespace

Tokenizer Tokenizer::from_ordered_vocab(const std::vector<std::pair<std::string, int32_t>>& vocab, bool add_blank,
                                        bool normalize, const std::string& pad_token,
                                        const std::string& unk_token) {
  VC_CHECK(!vocab.empty(), "tokenizer vocabulary is empty");
  Tokenizer t;
  bool has_blank = false;
  for (const auto& [key, id] : vocab) {
    VC_CHECK(!key.empty(), "tokenizer vocabulary has an empty key (id " << id << ")");
    decode_utf8(key, "tokenizer vocabulary key with id " + std::to_string(id));
    VC_CHECK(id >= 0, "tokenizer vocabulary key \"" << key << "\" has negative id " << id);
    VC_CHECK(t.vocab_.emplace(key, id).second, "tokenizer vocabulary has the key \"" << key << "\" twice");
    t.vocab_order_.push_back(key);
    has_blank = has_blank || id == 0;
  }
  VC_CHECK(!add_blank || has_blank,
           "tokenizer: add_blank needs the blank token with id 0, but no vocabulary key has id 0");
  t.add_blank_ = add_blank;
  t.normalize_ = normalize;
  t.pad_token_ = pad_token;
  t.unk_token_ = unk_token;
  // transformers' normalize_text also tries the special tokens, after the vocab.
  for (const std::string& special : {pad_token, unk_token})
    if (!special.empty()) t.vocab_order_.push_back(special);
  return t;
}

Tokenizer Tokenizer::from_vocab(std::map<std::string, int32_t> vocab, bool add_blank, bool normalize,
                                const std::string& pad_token) {
  std::vector<std::pair<std::string, int32_t>> ordered(vocab.begin(), vocab.end());
  return from_ordered_vocab(ordered, add_blank, normalize, pad_token);
}

Tokenizer Tokenizer::from_dir(const std::string& model_dir) {
  const std::string vocab_path = model_dir + "/vocab.json";
  const ordered_json vocab_json = read_json_file(vocab_path);
  VC_CHECK(vocab_json.is_object(), vocab_path << ": must be a JSON object of token -> id, got "
                                              << vocab_json.type_name());
  std::vector<std::pair<std::string, int32_t>> vocab;
  for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it) {
    const ordered_json& id = it.value();
    VC_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() <= INT32_MAX,
             vocab_path << ": id of token \"" << it.key() << "\" must be a non-negative integer, got " << id.dump());
    vocab.emplace_back(it.key(), static_cast<int32_t>(id.get<int64_t>()));
  }

  // Without tokenizer_config.json: transformers' defaults, except phonemize (an mms-tts directory).
  bool add_blank = true, normalize = true, phonemize = false, is_uroman = false;
  std::string pad_token = "<pad>", unk_token = "<unk>", language;
  std::ifstream probe(model_dir + "/tokenizer_config.json");
  if (probe) {
    probe.close();
    const std::string config_path = model_dir + "/tokenizer_config.json";
    const ordered_json config = read_json_file(config_path);
    VC_CHECK(config.is_object(), config_path << ": must be a JSON object, got " << config.type_name());
    phonemize = read_bool(config, "phonemize", false, config_path);
    is_uroman = read_bool(config, "is_uroman", false, config_path);
    VC_CHECK(!(phonemize && is_uroman),
             config_path << ": phonemize=true together with is_uroman=true (romanised text phonemised as English) "
                         << "is not supported; one front-end at a time");
    add_blank = read_bool(config, "add_blank", add_blank, config_path);
    normalize = read_bool(config, "normalize", normalize, config_path);
    if (config.contains("pad_token") && !config["pad_token"].is_null())
      pad_token = token_string(config["pad_token"], config_path, "pad_token");
    if (config.contains("unk_token") && !config["unk_token"].is_null())
      unk_token = token_string(config["unk_token"], config_path, "unk_token");
    if (config.contains("language") && !config["language"].is_null()) {
      VC_CHECK(config["language"].is_string(),
               config_path << ": field 'language' must be a string, got " << config["language"].type_name());
      language = config["language"].get<std::string>();
    }
  }
  Tokenizer t = from_ordered_vocab(vocab, add_blank, normalize, pad_token, unk_token);
  t.language_ = language;
  t.front_end_ = phonemize ? FrontEnd::Phonemes : is_uroman ? FrontEnd::Uroman : FrontEnd::Characters;
  return t;
}

int32_t Tokenizer::pad_id() const {
  auto it = vocab_.find(pad_token_);
  VC_CHECK(it != vocab_.end(), "tokenizer: pad token \"" << pad_token_ << "\" is not in the vocabulary");
  return it->second;
}

const char* front_end_name(FrontEnd f) {
  switch (f) {
    case FrontEnd::Characters: return "characters";
    case FrontEnd::Uroman: return "uroman";
    case FrontEnd::Phonemes: return "phonemes";
  }
  return "?";
}

std::string Tokenizer::front_end_description() const {
  switch (front_end_) {
    case FrontEnd::Characters: return "characters";
    case FrontEnd::Uroman:
      return std::string("uroman (PyPI uroman, ") + (uroman_available() ? "installed" : "not installed") + ")";
    case FrontEnd::Phonemes: return "phonemes (espeak-ng " + espeak_ng_version() + ", " + kPhonemizerLanguage + ")";
  }
  return "?";
}

TokenizerResult Tokenizer::encode(const std::string& text) const {
  VC_CHECK(!python_strip(decode_utf8(text, "text")).empty(), "empty text: nothing to tokenize");
  return encode_front_end_text(front_end_texts({text})[0], text);
}

std::vector<std::string> Tokenizer::front_end_texts(const std::vector<std::string>& texts) const {
  std::vector<std::string> out;
  out.reserve(texts.size());
  // Texts that uroman romanises: their index in `out`.
  std::vector<size_t> to_romanise;
  for (const std::string& text : texts) {
    const std::u32string input = decode_utf8(text, "text");
    if (python_strip(input).empty()) {  // encode() says so; a batch goes on
      out.emplace_back();
      continue;
    }
    std::u32string normalized = normalize_ ? normalize(input) : input;
    if (language_ == "ron") std::replace(normalized.begin(), normalized.end(), char32_t(0x021B), char32_t(0x0163));
    if (front_end_ == FrontEnd::Uroman && has_non_ascii(normalized)) to_romanise.push_back(out.size());
    out.push_back(to_utf8(normalized));
  }
  if (!to_romanise.empty()) {
    std::vector<std::string> batch;
    for (size_t i : to_romanise) batch.push_back(out[i]);
    std::vector<std::string> romanised = uroman_romanize(batch);
    for (size_t k = 0; k < to_romanise.size(); ++k) out[to_romanise[k]] = std::move(romanised[k]);
  }
  if (front_end_ == FrontEnd::Phonemes)
    for (std::string& t : out) t = phonemize_espeak(t, kPhonemizerLanguage);
  return out;
}

std::u32string Tokenizer::normalize(const std::u32string& input) const {
  // Vocab keys grouped by their first character, each group in vocab order.
  std::vector<std::u32string> words;
  std::unordered_map<char32_t, std::vector<size_t>> words_by_first;
  for (const std::string& key : vocab_order_) {
    words.push_back(decode_utf8(key, "vocabulary key"));
    words_by_first[words.back()[0]].push_back(words.size() - 1);
  }
  std::u32string normalized;
  size_t i = 0;
  while (i < input.size()) {
    bool matched = false;
    auto group = words_by_first.find(input[i]);
    if (group != words_by_first.end()) {
      for (size_t w : group->second) {
        const std::u32string& word = words[w];
        if (input.compare(i, word.size(), word) == 0) {
          normalized += word;
          i += word.size();
          matched = true;
          break;
        }
      }
    }
    if (!matched) append_python_lower(input[i++], normalized);
  }
  return normalized;
}

TokenizerResult Tokenizer::encode_front_end_text(const std::string& front_end_text, const std::string& original) const {
  const std::u32string normalized = decode_utf8(front_end_text, "text");
  const bool phonemes = front_end_ == FrontEnd::Phonemes;
  const auto unk = vocab_.find(unk_token_);
  const bool map_to_unk = phonemes && !unk_token_.empty() && unk != vocab_.end();

  TokenizerResult result;
  result.front_end_text = front_end_text;
  std::u32string kept;
  for (char32_t c : normalized) {
    const std::string ch = to_utf8(c);
    if (vocab_.count(ch)) {
      kept.push_back(c);
    } else if (map_to_unk) {
      kept.push_back(c);  // takes unk_token's id below
    } else if (std::find(result.dropped.begin(), result.dropped.end(), ch) == result.dropped.end()) {
      result.dropped.push_back(ch);
    }
  }
  // transformers strips only in the normalising branch without phonemes.
  if (normalize_ && !phonemes) kept = python_strip(kept);
  VC_CHECK(!kept.empty(), "no character of the text is in the tokenizer vocabulary"
                              << (result.dropped.empty() ? std::string()
                                                         : " (dropped: " + quoted_list(result.dropped) + ")")
                              << "; text: \"" << original << "\""
                              << (front_end_ == FrontEnd::Characters ? std::string()
                                                                     : std::string(", ") + front_end_name(front_end_) +
                                                                           ": \"" + front_end_text + "\""));

  // Special tokens that are vocab keys split the text; each is emitted alone.
  std::vector<std::pair<std::u32string, int32_t>> splitters;
  for (const std::string& special : {pad_token_, unk_token_}) {
    auto it = vocab_.find(special);
    if (!special.empty() && it != vocab_.end()) splitters.emplace_back(decode_utf8(special, "special token"), it->second);
  }
  // Longest first, so that at one position the longest special token wins.
  std::stable_sort(splitters.begin(), splitters.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

  std::u32string piece;
  auto flush_piece = [&]() {
    if (piece.empty()) return;
    if (add_blank_) result.ids.push_back(blank_id());
    for (char32_t c : piece) {
      const auto it = vocab_.find(to_utf8(c));
      result.ids.push_back(it != vocab_.end() ? it->second : unk->second);
      if (add_blank_) result.ids.push_back(blank_id());
    }
    piece.clear();
  };
  size_t i = 0;
  while (i < kept.size()) {
    bool matched = false;
    for (const auto& [token, id] : splitters) {
      if (kept.compare(i, token.size(), token) == 0) {
        flush_piece();
        result.ids.push_back(id);
        i += token.size();
        matched = true;
        break;
      }
    }
    if (!matched) piece.push_back(kept[i++]);
  }
  flush_piece();
  return result;
}

}  // namespace vitscuda::io
