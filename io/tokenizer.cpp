// Mirrors transformers' VitsTokenizer (tokenization_vits.py) without phonemizer or uroman:
//   1. normalize_text: at each position the first vocab key (vocab.json order, then the
//      special tokens) matching the text there is kept verbatim; otherwise the single
//      character is lowercased with Python's str.lower() (tables in unicode_tables.inc
//      cover all of Unicode as Python 3.11 does, one character at a time);
//   2. characters whose single-character string is not a vocab key are dropped;
//   3. Python str.strip() (Unicode whitespace);
//   4. the text is split at the special tokens that are vocab keys (pad "k" for mms-tts):
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

namespace vitscuda::io {

namespace {

struct LowercaseRun {
  char32_t first, last;
  int step;
  int delta;
};
struct LowercaseExpansion {
  char32_t code_point;
  char32_t lower[3];
  int count;
};
#include "io/unicode_tables.inc"

using ordered_json = nlohmann::ordered_json;

std::u32string decode_utf8(const std::string& s, const std::string& what) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int extra = 0;
    char32_t cp = 0;
    if (b0 < 0x80) {
      cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      cp = b0 & 0x1F;
      extra = 1;
    } else if ((b0 & 0xF0) == 0xE0) {
      cp = b0 & 0x0F;
      extra = 2;
    } else if ((b0 & 0xF8) == 0xF0) {
      cp = b0 & 0x07;
      extra = 3;
    } else {
      VC_FAIL(what << " is not valid UTF-8 (byte 0x" << std::hex << int(b0) << std::dec << " at offset " << i << ")");
    }
    VC_CHECK(i + static_cast<size_t>(extra) < s.size(),
             what << " is not valid UTF-8 (truncated sequence at offset " << i << ")");
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      VC_CHECK((b & 0xC0) == 0x80, what << " is not valid UTF-8 (bad continuation byte at offset " << i + k << ")");
      cp = (cp << 6) | (b & 0x3F);
    }
    static const char32_t min_for_length[4] = {0, 0x80, 0x800, 0x10000};
    VC_CHECK(cp >= min_for_length[extra] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF),
             what << " is not valid UTF-8 (overlong or out-of-range sequence at offset " << i << ")");
    out.push_back(cp);
    i += static_cast<size_t>(extra) + 1;
  }
  return out;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string to_utf8(char32_t cp) {
  std::string s;
  append_utf8(cp, s);
  return s;
}

// Python's chr(cp).lower().
void append_lower(char32_t cp, std::u32string& out) {
  if (cp < 0x80) {
    out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  for (const LowercaseExpansion& e : kLowercaseExpansions) {
    if (e.code_point == cp) {
      out.append(e.lower, static_cast<size_t>(e.count));
      return;
    }
  }
  for (const LowercaseRun& r : kLowercaseRuns) {
    if (cp >= r.first && cp <= r.last && (cp - r.first) % static_cast<char32_t>(r.step) == 0) {
      out.push_back(static_cast<char32_t>(static_cast<int64_t>(cp) + r.delta));
      return;
    }
  }
  out.push_back(cp);
}

bool is_python_space(char32_t cp) {
  return std::find(std::begin(kWhitespace), std::end(kWhitespace), cp) != std::end(kWhitespace);
}

std::u32string python_strip(const std::u32string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_python_space(s[b])) ++b;
  while (e > b && is_python_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

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

  // Without tokenizer_config.json: transformers' defaults, except phonemize (unsupported).
  bool add_blank = true, normalize = true;
  std::string pad_token = "<pad>", unk_token = "<unk>", language;
  std::ifstream probe(model_dir + "/tokenizer_config.json");
  if (probe) {
    probe.close();
    const std::string config_path = model_dir + "/tokenizer_config.json";
    const ordered_json config = read_json_file(config_path);
    VC_CHECK(config.is_object(), config_path << ": must be a JSON object, got " << config.type_name());
    VC_CHECK(!read_bool(config, "phonemize", false, config_path),
             config_path << ": phonemize=true (espeak phonemes) is not supported; only character vocabularies "
                         << "(mms-tts style, phonemize=false) are");
    VC_CHECK(!read_bool(config, "is_uroman", false, config_path),
             config_path << ": is_uroman=true (uroman romanisation) is not supported; romanise the text "
                         << "beforehand and use a tokenizer_config.json with is_uroman=false");
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
  return t;
}

int32_t Tokenizer::pad_id() const {
  auto it = vocab_.find(pad_token_);
  VC_CHECK(it != vocab_.end(), "tokenizer: pad token \"" << pad_token_ << "\" is not in the vocabulary");
  return it->second;
}

TokenizerResult Tokenizer::encode(const std::string& text) const {
  const std::u32string input = decode_utf8(text, "text");
  VC_CHECK(!python_strip(input).empty(), "empty text: nothing to tokenize");

  std::u32string normalized;
  if (normalize_) {
    // Vocab keys grouped by their first character, each group in vocab order.
    std::vector<std::u32string> words;
    std::unordered_map<char32_t, std::vector<size_t>> words_by_first;
    for (const std::string& key : vocab_order_) {
      words.push_back(decode_utf8(key, "vocabulary key"));
      words_by_first[words.back()[0]].push_back(words.size() - 1);
    }
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
      if (!matched) append_lower(input[i++], normalized);
    }
  } else {
    normalized = input;
  }
  if (language_ == "ron") std::replace(normalized.begin(), normalized.end(), char32_t(0x021B), char32_t(0x0163));

  TokenizerResult result;
  std::u32string kept;
  for (char32_t c : normalized) {
    const std::string ch = to_utf8(c);
    if (vocab_.count(ch)) {
      kept.push_back(c);
    } else if (std::find(result.dropped.begin(), result.dropped.end(), ch) == result.dropped.end()) {
      result.dropped.push_back(ch);
    }
  }
  // transformers strips only in the normalising branch.
  if (normalize_) kept = python_strip(kept);
  VC_CHECK(!kept.empty(), "no character of the text is in the tokenizer vocabulary"
                              << (result.dropped.empty() ? std::string()
                                                         : " (dropped: " + quoted_list(result.dropped) + ")")
                              << "; text: \"" << text << "\"");

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
      result.ids.push_back(vocab_.at(to_utf8(c)));
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
