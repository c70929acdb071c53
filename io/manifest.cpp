#include "io/manifest.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "common/error.h"
#include "io/json_input.h"

namespace fs = std::filesystem;

namespace vitscuda::io {

namespace {

const std::vector<std::string> kPathColumns = {"path",       "audio",          "file", "audio_path",
                                               "audio_file", "audio_filepath", "wav",  "filename"};
const std::vector<std::string> kTextColumns = {"text", "transcript", "transcription", "sentence"};
const std::vector<std::string> kSpeakerColumns = {"speaker", "speaker_id"};
const std::vector<std::string> kIdColumns = {"id"};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool is_blank(const std::string& s) { return trim(s).empty(); }

// Physical lines with their 1-based numbers; "\r\n" and "\n" both end a line.
struct Line {
  int number;
  std::string text;
};

std::vector<Line> split_lines(const std::string& content) {
  std::vector<Line> lines;
  size_t pos = 0;
  int number = 1;
  while (pos < content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string::npos) end = content.size();
    std::string text = content.substr(pos, end - pos);
    if (!text.empty() && text.back() == '\r') text.pop_back();
    lines.push_back({number++, std::move(text)});
    pos = end + 1;
  }
  return lines;
}

std::vector<std::string> split_plain(const std::string& line, char delimiter) {
  std::vector<std::string> fields;
  size_t pos = 0;
  for (;;) {
    size_t end = line.find(delimiter, pos);
    if (end == std::string::npos) {
      fields.push_back(line.substr(pos));
      return fields;
    }
    fields.push_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
}

// One RFC 4180 record starting at `pos`. On success `pos` moves past the record's line end.
// On a quoting error the record is abandoned and `pos` moves to the start of the next physical
// line, so that one bad quote costs one line, not the rest of the file.
struct CsvRecord {
  int line = 0;
  int lines_spanned = 1;
  std::vector<std::string> fields;
  std::string error;  // empty when well-formed
};

CsvRecord parse_csv_record(const std::string& s, size_t& pos, int line, char delimiter) {
  CsvRecord record;
  record.line = line;
  const size_t start = pos;
  auto skip_to_next_line = [&] {
    const size_t nl = s.find('\n', start);
    pos = nl == std::string::npos ? s.size() : nl + 1;
    record.lines_spanned = 1;
  };
  std::string field;
  for (;;) {
    field.clear();
    if (pos < s.size() && s[pos] == '"') {
      const int quote_line = line + record.lines_spanned - 1;
      ++pos;
      bool closed = false;
      while (pos < s.size()) {
        const char c = s[pos];
        if (c == '"') {
          if (pos + 1 < s.size() && s[pos + 1] == '"') {
            field += '"';
            pos += 2;
            continue;
          }
          ++pos;
          closed = true;
          break;
        }
        if (c == '\n') ++record.lines_spanned;
        field += c;
        ++pos;
      }
      if (!closed) {
        record.error = "quoted field " + std::to_string(record.fields.size() + 1) + " opened on line " +
                       std::to_string(quote_line) + " is never closed";
        skip_to_next_line();
        return record;
      }
      if (pos < s.size() && s[pos] == '\r' && pos + 1 < s.size() && s[pos + 1] == '\n') ++pos;
      if (pos < s.size() && s[pos] != delimiter && s[pos] != '\n') {
        record.error = "unexpected character '" + std::string(1, s[pos]) + "' after the closing quote of field " +
                       std::to_string(record.fields.size() + 1);
        skip_to_next_line();
        return record;
      }
    } else {
      // Unquoted: up to the delimiter or the line end. A stray quote inside is kept as text.
      while (pos < s.size() && s[pos] != delimiter && s[pos] != '\n') field += s[pos++];
      if (!field.empty() && field.back() == '\r' && (pos >= s.size() || s[pos] == '\n')) field.pop_back();
    }
    record.fields.push_back(field);
    if (pos >= s.size()) return record;
    if (s[pos] == '\n') {
      ++pos;
      return record;
    }
    ++pos;  // the delimiter
  }
}

std::optional<size_t> find_column(const std::vector<std::string>& header, const std::vector<std::string>& names) {
  for (const std::string& name : names)
    for (size_t i = 0; i < header.size(); ++i)
      if (lower(trim(header[i])) == name) return i;
  return std::nullopt;
}

struct Columns {
  size_t path = 0, text = 0;
  std::optional<size_t> speaker, id;
};

std::optional<Columns> recognise_header(const std::vector<std::string>& header) {
  Columns c;
  auto path = find_column(header, kPathColumns);
  auto text = find_column(header, kTextColumns);
  if (!path || !text) return std::nullopt;
  c.path = *path;
  c.text = *text;
  c.speaker = find_column(header, kSpeakerColumns);
  c.id = find_column(header, kIdColumns);
  return c;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string resolve(const std::string& audio_dir, const std::string& path) {
  const fs::path p(path);
  if (p.is_absolute() || audio_dir.empty()) return p.lexically_normal().string();
  return (fs::path(audio_dir) / p).lexically_normal().string();
}

bool has_audio_extension(const std::string& name) {
  const std::string ext = lower(fs::path(name).extension().string());
  for (const char* e : {".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif", ".au"})
    if (ext == e) return true;
  return false;
}

std::string id_from_path(const std::string& path) { return fs::path(path).replace_extension().generic_string(); }

// A speaker field: empty means none; otherwise a non-negative decimal integer.
bool parse_speaker(const std::string& raw, int& speaker, std::string& error) {
  const std::string s = trim(raw);
  if (s.empty()) {
    speaker = -1;
    return true;
  }
  long long v = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c)) || v > INT_MAX) {
      error = "speaker \"" + s + "\" is not a non-negative integer speaker id";
      return false;
    }
    v = v * 10 + (c - '0');
  }
  if (v > INT_MAX) {
    error = "speaker \"" + s + "\" is out of range";
    return false;
  }
  speaker = static_cast<int>(v);
  return true;
}

class Builder {
 public:
  Builder(Manifest& m, std::string audio_dir) : m_(m), audio_dir_(std::move(audio_dir)) {}

  void reject(int line, std::string id, std::string path, std::string reason, std::string detail) {
    m_.rejected.push_back({line, std::move(id), std::move(path), std::move(reason), std::move(detail)});
  }

  // `path` is as written in the manifest; `id` empty means: derive it from the path.
  void add(int line, std::string id, const std::string& path, std::string text, const std::string& speaker_field) {
    const std::string trimmed_path = trim(path);
    if (id.empty() && !trimmed_path.empty()) id = id_from_path(trimmed_path);
    if (trimmed_path.empty()) {
      reject(line, id, "", "missing_field", "empty audio path");
      return;
    }
    int speaker = -1;
    std::string error;
    if (!parse_speaker(speaker_field, speaker, error)) {
      reject(line, id, resolve(audio_dir_, trimmed_path), "bad_speaker", error);
      return;
    }
    add_resolved(line, std::move(id), resolve(audio_dir_, trimmed_path), std::move(text), speaker);
  }

  void add_resolved(int line, std::string id, std::string resolved_path, std::string text, int speaker) {
    auto [it, inserted] = first_line_of_id_.emplace(id, line);
    if (!inserted) {
      reject(line, id, resolved_path, "duplicate_id",
             "id \"" + id + "\" already used on line " + std::to_string(it->second));
      return;
    }
    m_.entries.push_back({std::move(id), std::move(resolved_path), std::move(text), speaker, line});
  }

  const std::string& audio_dir() const { return audio_dir_; }

 private:
  Manifest& m_;
  std::string audio_dir_;
  std::map<std::string, int> first_line_of_id_;
};

void parse_ljspeech(const std::string& content, Builder& b) {
  // The error_code overloads throughout: a path that cannot be checked (a component longer than
  // NAME_MAX, no permission) is the row's problem, not an exception out of the parser.
  // An audio directory that cannot be checked shows up as bad_path on the rows below.
  std::error_code dir_error;
  const bool has_wavs_dir =
      !b.audio_dir().empty() && fs::is_directory(fs::path(b.audio_dir()) / "wavs", dir_error);
  for (const Line& line : split_lines(content)) {
    if (is_blank(line.text)) continue;
    const std::vector<std::string> f = split_plain(line.text, '|');
    if (f.size() != 2 && f.size() != 3) {
      b.reject(line.number, f.size() > 1 ? trim(f[0]) : "", "", "bad_columns",
               "expected id|text|normalized (2 or 3 '|'-separated columns), found " + std::to_string(f.size()));
      continue;
    }
    const std::string id = trim(f[0]);
    if (id.empty()) {
      b.reject(line.number, "", "", "missing_field", "empty id (first column)");
      continue;
    }
    const std::string name = has_audio_extension(id) ? id : id + ".wav";
    const std::string in_wavs = resolve(b.audio_dir(), "wavs/" + name);
    const std::string beside = resolve(b.audio_dir(), name);
    std::string path;
    std::error_code in_wavs_error, beside_error;
    if (fs::exists(in_wavs, in_wavs_error)) {
      path = in_wavs;
    } else if (fs::exists(beside, beside_error)) {
      path = beside;
    } else if (in_wavs_error || beside_error) {
      const std::string& unchecked = in_wavs_error ? in_wavs : beside;
      const std::error_code& error = in_wavs_error ? in_wavs_error : beside_error;
      b.reject(line.number, id, unchecked, "bad_path",
               "cannot look for the audio at " + unchecked + ": " + error.message());
      continue;
    } else {
      path = has_wavs_dir ? in_wavs : beside;  // missing either way: name the likelier place
    }
    const std::string text = f.size() == 3 && !is_blank(f[2]) ? f[2] : f[1];
    b.add_resolved(line.number, has_audio_extension(id) ? id_from_path(id) : id, path, text, -1);
  }
}

void parse_delimited_rows(const std::string& content, Builder& b, char delimiter, bool quoting,
                          const std::string& source) {
  // Records with their line numbers; blank lines skipped.
  std::vector<CsvRecord> records;
  if (quoting) {
    size_t pos = 0;
    int line = 1;
    while (pos < content.size()) {
      CsvRecord r = parse_csv_record(content, pos, line, delimiter);
      line += r.lines_spanned;  // the record's own line end was consumed
      if (r.error.empty() && r.fields.size() == 1 && is_blank(r.fields[0])) continue;
      records.push_back(std::move(r));
    }
  } else {
    for (const Line& line : split_lines(content)) {
      if (is_blank(line.text)) continue;
      CsvRecord r;
      r.line = line.number;
      r.fields = split_plain(line.text, delimiter);
      records.push_back(std::move(r));
    }
  }
  VC_CHECK(!records.empty(), "manifest " << source << " has no rows");
  const CsvRecord& header_record = records.front();
  VC_CHECK(header_record.error.empty(), "manifest " << source << ": cannot parse the header on line "
                                                    << header_record.line << ": " << header_record.error);
  const std::optional<Columns> columns = recognise_header(header_record.fields);
  VC_CHECK(columns, "manifest " << source << ": the header (line " << header_record.line << ": "
                                << join(header_record.fields, std::string(1, delimiter)) << ") needs an audio column ("
                                << join(kPathColumns, ", ") << ") and a text column (" << join(kTextColumns, ", ")
                                << ")");
  const size_t n_columns = header_record.fields.size();
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& rec = records[r];
    if (!rec.error.empty()) {
      b.reject(rec.line, "", "", "bad_quoting", rec.error);
      continue;
    }
    const auto field = [&](size_t i) { return i < rec.fields.size() ? rec.fields[i] : std::string(); };
    if (rec.fields.size() != n_columns) {
      const std::string path = trim(field(columns->path));
      const std::string id = columns->id ? trim(field(*columns->id)) : path.empty() ? "" : id_from_path(path);
      b.reject(rec.line, id, path.empty() ? "" : resolve(b.audio_dir(), path), "bad_columns",
               "expected " + std::to_string(n_columns) + " columns as in the header, found " +
                   std::to_string(rec.fields.size()));
      continue;
    }
    b.add(rec.line, columns->id ? trim(field(*columns->id)) : "", field(columns->path), field(columns->text),
          columns->speaker ? field(*columns->speaker) : "");
  }
}

void parse_jsonl(const std::string& content, Builder& b, const std::string& source) {
  const size_t first = content.find_first_not_of(" \t\r\n");
  VC_CHECK(first == std::string::npos || content[first] != '[',
           "manifest " << source << " is a JSON array; expected JSONL (one JSON object per line)");
  for (const Line& line : split_lines(content)) {
    if (is_blank(line.text)) continue;
    nlohmann::json j;
    try {
      j = parse_json_input<nlohmann::json>(source + " line " + std::to_string(line.number), line.text);
    } catch (const nlohmann::json::exception& e) {
      b.reject(line.number, "", "", "bad_json", e.what());
      continue;
    } catch (const Error& e) {  // nested too deep
      b.reject(line.number, "", "", "bad_json", e.what());
      continue;
    }
    if (!j.is_object()) {
      b.reject(line.number, "", "", "bad_json", std::string("expected a JSON object, found ") + j.type_name());
      continue;
    }
    // Keys are matched case-insensitively, each alias list in priority order.
    auto lookup = [&](const std::vector<std::string>& names) -> const nlohmann::json* {
      for (const std::string& name : names)
        for (auto it = j.begin(); it != j.end(); ++it)
          if (lower(it.key()) == name) return &it.value();
      return nullptr;
    };
    const nlohmann::json* path = lookup(kPathColumns);
    const nlohmann::json* text = lookup(kTextColumns);
    const nlohmann::json* speaker = lookup(kSpeakerColumns);
    const nlohmann::json* id = lookup(kIdColumns);
    std::string id_string;
    if (id && id->is_string()) id_string = trim(id->get<std::string>());
    if (id && id->is_number_integer()) id_string = std::to_string(id->get<long long>());
    if (!path || !path->is_string()) {
      b.reject(line.number, id_string, "", "missing_field",
               path ? "audio path is not a string" : "no audio path key (" + join(kPathColumns, ", ") + ")");
      continue;
    }
    if (!text || !text->is_string()) {
      b.reject(line.number, id_string.empty() ? id_from_path(trim(path->get<std::string>())) : id_string,
               resolve(b.audio_dir(), trim(path->get<std::string>())), "missing_field",
               text ? "text is not a string" : "no text key (" + join(kTextColumns, ", ") + ")");
      continue;
    }
    std::string speaker_field;
    if (speaker && !speaker->is_null()) {
      if (speaker->is_number_unsigned())
        speaker_field = std::to_string(speaker->get<unsigned long long>());
      else if (speaker->is_string())
        speaker_field = speaker->get<std::string>();
      else
        speaker_field = speaker->dump();  // rejected by parse_speaker with the value shown
      if (speaker_field.empty()) speaker_field = "\"\"";
    }
    b.add(line.number, id_string, path->get<std::string>(), text->get<std::string>(), speaker_field);
  }
}

std::string first_nonblank_line(const std::string& content) {
  for (const Line& line : split_lines(content))
    if (!is_blank(line.text)) return line.text;
  return "";
}

// The delimiter whose split of the first line is a recognised header, if any.
std::optional<char> header_delimiter(const std::string& content, const std::vector<char>& candidates) {
  for (char d : candidates) {
    std::vector<std::string> fields;
    if (d == '\t') {
      fields = split_plain(first_nonblank_line(content), d);
    } else {
      const size_t start = content.find_first_not_of(" \t\r\n");
      if (start == std::string::npos) return std::nullopt;
      size_t pos = content.rfind('\n', start);
      pos = pos == std::string::npos ? 0 : pos + 1;
      CsvRecord r = parse_csv_record(content, pos, 1, d);
      if (!r.error.empty()) continue;
      fields = r.fields;
    }
    if (fields.size() >= 2 && recognise_header(fields)) return d;
  }
  return std::nullopt;
}

}  // namespace

ManifestFormat parse_manifest_format(const std::string& name) {
  const std::string n = lower(name);
  if (n == "auto") return ManifestFormat::Auto;
  if (n == "ljspeech") return ManifestFormat::LJSpeech;
  if (n == "csv") return ManifestFormat::Csv;
  if (n == "tsv") return ManifestFormat::Tsv;
  if (n == "jsonl" || n == "json") return ManifestFormat::Jsonl;
  VC_FAIL("unknown manifest format \"" << name << "\"; expected auto, ljspeech, csv, tsv or jsonl");
}

const char* manifest_format_name(ManifestFormat format) {
  switch (format) {
    case ManifestFormat::Auto:
      return "auto";
    case ManifestFormat::LJSpeech:
      return "ljspeech";
    case ManifestFormat::Csv:
      return "csv";
    case ManifestFormat::Tsv:
      return "tsv";
    case ManifestFormat::Jsonl:
      return "jsonl";
  }
  return "?";
}

Manifest parse_manifest(const std::string& raw_content, const std::string& source, const std::string& audio_dir,
                        ManifestFormat format) {
  // A UTF-8 byte-order mark (spreadsheet exports) would otherwise stick to the first column name.
  const std::string content = raw_content.compare(0, 3, "\xEF\xBB\xBF") == 0 ? raw_content.substr(3) : raw_content;
  VC_CHECK(!is_blank(content), "manifest " << source << " is empty");

  char delimiter = ',';
  if (format == ManifestFormat::Auto) {
    const std::string ext = lower(fs::path(source).extension().string());
    const std::string first = first_nonblank_line(content);
    if (ext == ".jsonl" || ext == ".json" || ext == ".ndjson") {
      format = ManifestFormat::Jsonl;
    } else if (ext == ".tsv") {
      format = ManifestFormat::Tsv;
    } else if (trim(first).front() == '{') {
      format = ManifestFormat::Jsonl;
    } else if (auto d = header_delimiter(content, {',', '|', '\t'})) {
      format = *d == '\t' ? ManifestFormat::Tsv : ManifestFormat::Csv;
      delimiter = *d;
    } else {
      const size_t columns = split_plain(first, '|').size();
      VC_CHECK(columns == 2 || columns == 3, "cannot tell the format of manifest "
                                                 << source << ": its first line (\"" << first
                                                 << "\") is neither a header with audio and text columns nor "
                                                    "LJSpeech id|text|normalized; pass --format");
      format = ManifestFormat::LJSpeech;
    }
  } else if (format == ManifestFormat::Csv) {
    delimiter = header_delimiter(content, {',', '|'}).value_or(',');
  }

  Manifest m;
  m.format = format;
  Builder builder(m, audio_dir);
  switch (format) {
    case ManifestFormat::LJSpeech:
      parse_ljspeech(content, builder);
      break;
    case ManifestFormat::Csv:
      parse_delimited_rows(content, builder, delimiter, true, source);
      break;
    case ManifestFormat::Tsv:
      parse_delimited_rows(content, builder, '\t', false, source);
      break;
    case ManifestFormat::Jsonl:
      parse_jsonl(content, builder, source);
      break;
    case ManifestFormat::Auto:
      break;
  }
  if (m.entries.empty()) {
    std::ostringstream first;
    if (!m.rejected.empty())
      first << "; first problem: line " << m.rejected.front().line << ": " << m.rejected.front().reason << " ("
            << m.rejected.front().detail << ")";
    VC_FAIL("manifest " << source << " (" << manifest_format_name(format)
                        << ") has no usable row: " << m.rejected.size() << " rejected" << first.str());
  }
  return m;
}

Manifest read_manifest(const std::string& path, const std::string& audio_dir, ManifestFormat format) {
  std::error_code ec;
  VC_CHECK(fs::is_regular_file(path, ec),
           "manifest " << path << " does not exist or is not a file" << (ec ? ": " + ec.message() : std::string()));
  std::ifstream in(path, std::ios::binary);
  VC_CHECK(in, "cannot open manifest " << path << ": " << std::strerror(errno));
  std::ostringstream os;
  os << in.rdbuf();
  return parse_manifest(os.str(), path, audio_dir, format);
}

}  // namespace vitscuda::io
