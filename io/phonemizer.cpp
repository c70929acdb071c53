// Mirrors, step by step, what phonemizer.phonemize() does for the arguments transformers passes:
//   1. the text is split into lines at "\n" (after stripping "\n" from both ends); blank lines are dropped;
//   2. Punctuation.preserve: in each line the matches of (\s*(?:mark)+\s*)+ (the marks
//      ;:,.!?¡¿—…"«»“”(){}[] ; "," and "." only when not between two ASCII digits) are cut out and kept with
//      their position: B (first match, the line starts with it), E (last match, the line ends with it),
//      I (inside) or A (the whole line); the pieces between them, less empty ones, are phonemized;
//   3. each piece: espeak_TextToPhonemes until the text is consumed, the parts joined by " "; then
//      strip, newlines to spaces, "  " to " " (one pass), runs of "_" to one "_", "_ " to " ", each word
//      stripped and its "_" phoneme separators removed, the words joined by " ";
//   4. Punctuation.restore puts the marks back (the same loop, including its use of the line number as
//      the position of a mark), the lines are joined by "\n";
// and transformers replaces each run of whitespace by one space.
#include "io/phonemizer.h"

#include <espeak-ng/speak_lib.h>

#include <mutex>
#include <vector>

#include "common/error.h"
#include "io/unicode_text.h"

namespace vitscuda::io {

namespace {

const std::u32string kMarks = U";:,.!?¡¿—…\"«»“”(){}[]";

bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }

// Whether line[i] is a punctuation mark there: "," and "." between two digits are decimal separators.
bool is_mark_at(const std::u32string& line, size_t i) {
  const char32_t c = line[i];
  if (kMarks.find(c) == std::u32string::npos) return false;
  if (c != ',' && c != '.') return true;
  const bool digit_before = i > 0 && is_ascii_digit(line[i - 1]);
  const bool digit_after = i + 1 < line.size() && is_ascii_digit(line[i + 1]);
  return !(digit_before && digit_after);
}

struct Match {
  size_t begin, end;
};

// re.finditer for (\s*(?:mark)+\s*)+ : the greedy pattern matches, at the leftmost position where it can,
// the whole run of whitespace and marks that starts there, provided the run holds a mark.
std::vector<Match> find_marks(const std::u32string& line) {
  std::vector<Match> matches;
  size_t p = 0;
  while (p < line.size()) {
    size_t q = p;
    bool has_mark = false;
    while (q < line.size()) {
      if (is_mark_at(line, q)) {
        has_mark = true;
      } else if (!is_python_space(line[q])) {
        break;
      }
      ++q;
    }
    if (has_mark) {
      matches.push_back({p, q});
      p = q;
    } else {
      ++p;
    }
  }
  return matches;
}

bool starts_with(const std::u32string& s, const std::u32string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}
bool ends_with(const std::u32string& s, const std::u32string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct MarkIndex {
  size_t line;
  std::u32string mark;
  char position;  // 'B', 'E', 'I' or 'A'
};

void preserve_line(std::u32string line, size_t num, std::vector<std::u32string>& pieces,
                   std::vector<MarkIndex>& marks) {
  const std::vector<Match> matches = find_marks(line);
  if (matches.empty()) {
    pieces.push_back(line);
    return;
  }
  if (matches.size() == 1 && matches[0].begin == 0 && matches[0].end == line.size()) {
    marks.push_back({num, line, 'A'});
    return;
  }
  std::vector<MarkIndex> line_marks;
  for (size_t k = 0; k < matches.size(); ++k) {
    const std::u32string text = line.substr(matches[k].begin, matches[k].end - matches[k].begin);
    char position = 'I';
    if (k == 0 && starts_with(line, text)) {
      position = 'B';
    } else if (k + 1 == matches.size() && ends_with(line, text)) {
      position = 'E';
    }
    line_marks.push_back({num, text, position});
  }
  // As Python's line.split(mark): cut at the first occurrence of the mark's text.
  for (const MarkIndex& m : line_marks) {
    const size_t at = line.find(m.mark);
    if (at == std::u32string::npos) {
      pieces.push_back(line);
      line.clear();
    } else {
      pieces.push_back(line.substr(0, at));
      line = line.substr(at + m.mark.size());
    }
  }
  pieces.push_back(line);
  marks.insert(marks.end(), line_marks.begin(), line_marks.end());
}

std::u32string replace_all(std::u32string s, const std::u32string& from, const std::u32string& to) {
  std::u32string out;
  size_t p = 0;
  for (size_t at; (at = s.find(from, p)) != std::u32string::npos; p = at + from.size()) {
    out.append(s, p, at - p);
    out += to;
  }
  out.append(s, p, std::u32string::npos);
  return out;
}

// re.sub(r"_+", "_", s)
std::u32string squeeze_underscores(const std::u32string& s) {
  std::u32string out;
  for (char32_t c : s)
    if (!(c == '_' && !out.empty() && out.back() == '_')) out.push_back(c);
  return out;
}

class Espeak {
 public:
  static Espeak& instance() {
    static Espeak e;
    return e;
  }

  std::mutex mutex;

  void select_language(const std::string& language) {
    if (language == language_) return;
    // phonemizer's choice: the first voice (in espeak-ng's order) whose first language is `language`,
    // skipping mbrola voices.
    const espeak_VOICE** voices = espeak_ListVoices(nullptr);
    VC_CHECK(voices != nullptr, "espeak-ng lists no voices (is espeak-ng-data installed?)");
    std::string identifier;
    for (size_t i = 0; voices[i] && identifier.empty(); ++i) {
      const espeak_VOICE* v = voices[i];
      if (!v->languages || !v->identifier || !v->languages[0]) continue;
      if (std::string(v->identifier).rfind("mb/", 0) == 0) continue;
      if (std::string(v->languages + 1) == language) identifier = v->identifier;
    }
    VC_CHECK(!identifier.empty(), "espeak-ng has no voice for the language \"" << language
                                      << "\" (tokenizer_config.json); `espeak-ng --voices` lists them");
    VC_CHECK(espeak_SetVoiceByName(identifier.c_str()) == EE_OK,
             "espeak-ng could not load the voice " << identifier << " for language \"" << language << "\"");
    language_ = language;
  }

  // phonemizer's EspeakWrapper.text_to_phonemes (no tie): IPA, "_" between phonemes.
  std::string text_to_phonemes(const std::string& text) {
    const void* pointer = text.c_str();
    std::string joined;
    bool first = true;
    while (pointer != nullptr) {
      const char* phonemes = espeak_TextToPhonemes(&pointer, espeakCHARS_UTF8, ('_' << 8) | 0x02);
      if (phonemes && *phonemes) {
        if (!first) joined += ' ';
        joined += phonemes;
        first = false;
      }
    }
    return joined;
  }

  std::string version() const { return version_; }

 private:
  Espeak() {
    // phonemizer passes options 0; DONT_EXIT only keeps espeak-ng from ending the process on an error.
    const int rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, nullptr, espeakINITIALIZE_DONT_EXIT);
    VC_CHECK(rate > 0, "espeak-ng failed to initialise (is the espeak-ng-data package installed?)");
    version_ = espeak_Info(nullptr);
  }
  // Frees espeak-ng's tables at exit (LeakSanitizer would report them otherwise).
  ~Espeak() { espeak_Terminate(); }
  Espeak(const Espeak&) = delete;
  Espeak& operator=(const Espeak&) = delete;
  std::string language_;
  const char* version_ = "";
};

// EspeakBackend._postprocess_line with strip=True, with_stress=True, phone separator "", word separator " ".
std::u32string postprocess_line(const std::u32string& raw) {
  std::u32string line = replace_all(replace_all(python_strip(raw), U"\n", U" "), U"  ", U" ");
  line = replace_all(squeeze_underscores(line), U"_ ", U" ");
  if (line.empty()) return line;
  std::u32string out;
  size_t start = 0;
  while (true) {
    const size_t space = line.find(U' ', start);
    std::u32string word =
        python_strip(line.substr(start, space == std::u32string::npos ? std::u32string::npos : space - start));
    out += replace_all(word, U"_", U"");
    out += U' ';
    if (space == std::u32string::npos) break;
    start = space + 1;
  }
  out.pop_back();  // strip: the last word separator
  return out;
}

// Punctuation.restore with word separator " " and strip=True.
std::vector<std::u32string> restore(std::vector<std::u32string> text, std::vector<MarkIndex> marks) {
  std::vector<std::u32string> out;
  size_t pos = 0;
  size_t t = 0, m = 0;  // the fronts of `text` and `marks`
  while (t < text.size() || m < marks.size()) {
    if (m == marks.size()) {
      for (; t < text.size(); ++t) out.push_back(text[t]);
    } else if (t == text.size()) {
      std::u32string all;
      for (; m < marks.size(); ++m) all += marks[m].mark;
      out.push_back(all);
    } else if (marks[m].line == pos) {
      const MarkIndex& mark = marks[m++];
      if (ends_with(text[t], U" ")) text[t].pop_back();
      if (mark.position == 'B') {
        text[t] = mark.mark + text[t];
      } else if (mark.position == 'E') {
        out.push_back(text[t] + mark.mark);
        ++t;
        ++pos;
      } else if (mark.position == 'A') {
        out.push_back(mark.mark);
        ++pos;
      } else if (t + 1 == text.size()) {
        text[t] += mark.mark;
      } else {
        text[t + 1] = text[t] + mark.mark + text[t + 1];
        ++t;
      }
    } else {
      out.push_back(text[t]);
      ++t;
      ++pos;
    }
  }
  return out;
}

// Python's str.strip("\n").split("\n").
std::vector<std::u32string> split_lines(const std::u32string& text) {
  size_t b = 0, e = text.size();
  while (b < e && text[b] == '\n') ++b;
  while (e > b && text[e - 1] == '\n') --e;
  std::vector<std::u32string> lines;
  size_t start = b;
  for (size_t i = b; i <= e; ++i) {
    if (i == e || text[i] == '\n') {
      lines.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  return lines;
}

}  // namespace

std::string phonemize_espeak(const std::string& text, const std::string& language) {
  std::vector<std::u32string> lines;
  for (const std::u32string& line : split_lines(decode_utf8(text, "text to phonemize")))
    if (!python_strip(line).empty()) lines.push_back(line);

  std::vector<std::u32string> pieces, kept_pieces;
  std::vector<MarkIndex> marks;
  for (size_t num = 0; num < lines.size(); ++num) preserve_line(lines[num], num, pieces, marks);
  for (const std::u32string& p : pieces)
    if (!p.empty()) kept_pieces.push_back(p);

  std::vector<std::u32string> phonemized;
  {
    Espeak& espeak = Espeak::instance();
    std::lock_guard<std::mutex> lock(espeak.mutex);
    espeak.select_language(language);
    for (const std::u32string& piece : kept_pieces)
      phonemized.push_back(postprocess_line(decode_utf8(espeak.text_to_phonemes(to_utf8(piece)), "espeak-ng output")));
  }
  const std::vector<std::u32string> restored = restore(std::move(phonemized), std::move(marks));

  // "\n".join(...), then re.sub(r"\s+", " ", ...).
  std::u32string joined;
  for (size_t i = 0; i < restored.size(); ++i) {
    if (i) joined += U'\n';
    joined += restored[i];
  }
  std::u32string out;
  for (char32_t c : joined) {
    if (is_python_space(c)) {
      if (out.empty() || out.back() != U' ') out.push_back(U' ');
    } else {
      out.push_back(c);
    }
  }
  return to_utf8(out);
}

std::string espeak_ng_version() {
  Espeak& espeak = Espeak::instance();
  std::lock_guard<std::mutex> lock(espeak.mutex);
  return espeak.version();
}

}  // namespace vitscuda::io
