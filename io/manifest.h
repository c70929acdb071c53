// Corpus manifests: which audio file goes with which text (and speaker).
//
// Formats:
//  - LJSpeech metadata.csv: `id|text|normalized` (or `id|text`), no header, no quoting (LJSpeech's
//    texts contain bare double quotes). The normalized column is used when it is not empty, since it
//    spells out numbers and abbreviations. Audio at AUDIO_DIR/wavs/<id>.wav or AUDIO_DIR/<id>.wav.
//  - CSV with a header row, RFC 4180 quoting (quoted fields may hold the delimiter, newlines and
//    doubled quotes). The delimiter is ',' or, when that is what makes the header recognisable, '|'.
//  - TSV with a header row. Fields are split on tabs with no quoting (as in Common Voice's .tsv
//    files, whose sentences hold bare quotes).
//  - JSONL: one JSON object per line.
// Header columns / JSON keys (case-insensitive): audio path `path|audio|file|audio_path|
// audio_file|audio_filepath|wav|filename`, text `text|transcript|transcription|sentence`, optional
// speaker `speaker|speaker_id` (a non-negative integer), optional `id` (default: the audio path
// without its extension).
//
// A malformed row is not fatal: it becomes a ManifestRejection with its line number. A manifest
// with no parsable row, or a CSV/TSV whose header names no audio or no text column, is an error.
#pragma once
#include <string>
#include <vector>

namespace vitscuda::io {

enum class ManifestFormat { Auto, LJSpeech, Csv, Tsv, Jsonl };

// "auto", "ljspeech", "csv", "tsv", "jsonl" (also "json"); throws for anything else.
ManifestFormat parse_manifest_format(const std::string& name);
const char* manifest_format_name(ManifestFormat format);

struct ManifestEntry {
  std::string id;
  std::string audio_path;  // resolved against the audio directory (absolute paths kept)
  std::string text;        // may be empty: deciding what text is usable is the caller's job
  int speaker = -1;        // -1: the row names no speaker
  int line = 0;            // 1-based line where the row starts
};

struct ManifestRejection {
  int line = 0;
  std::string id;      // empty when the row was too broken to tell
  std::string path;    // likewise
  std::string reason;  // bad_columns | bad_quoting | bad_json | missing_field | bad_speaker | duplicate_id |
                       // bad_path (LJSpeech: the audio's place cannot be checked, e.g. a name too long)
  std::string detail;
};

struct Manifest {
  ManifestFormat format = ManifestFormat::Auto;  // the format actually parsed
  std::vector<ManifestEntry> entries;
  std::vector<ManifestRejection> rejected;
};

// Parses `content`; `source` names the manifest in errors. `audio_dir` resolves relative audio
// paths; for LJSpeech the file's existence picks between AUDIO_DIR/wavs/<id>.wav and
// AUDIO_DIR/<id>.wav. With Auto, `source`'s extension chooses (.jsonl/.json: JSONL, .tsv: TSV,
// otherwise the first line decides between a recognised CSV header, LJSpeech and JSONL).
Manifest parse_manifest(const std::string& content, const std::string& source, const std::string& audio_dir,
                        ManifestFormat format = ManifestFormat::Auto);
// Reads `path` and parses it as above.
Manifest read_manifest(const std::string& path, const std::string& audio_dir,
                       ManifestFormat format = ManifestFormat::Auto);

}  // namespace vitscuda::io
