// io/manifest: parse_manifest on every format. The first byte picks the format (the low three
// bits: auto-detection under four file names, or LJSpeech, CSV, TSV, JSONL forced); the rest is
// the manifest. The audio directory holds AUDIO/wavs/LJ001-0001.wav and AUDIO/beside.wav so that
// LJSpeech's choice between the two places is exercised.
#include <cstdint>
#include <set>
#include <string>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/manifest.h"

using namespace vitscuda;

namespace {

struct Mode {
  io::ManifestFormat format;
  const char* source;
};
constexpr Mode kModes[8] = {
    {io::ManifestFormat::Auto, "metadata.csv"},  {io::ManifestFormat::Auto, "train.tsv"},
    {io::ManifestFormat::Auto, "train.jsonl"},   {io::ManifestFormat::Auto, "list.txt"},
    {io::ManifestFormat::LJSpeech, "list.txt"},  {io::ManifestFormat::Csv, "list.txt"},
    {io::ManifestFormat::Tsv, "list.txt"},       {io::ManifestFormat::Jsonl, "list.txt"},
};

const std::string& audio_dir() {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch_dir() + "/audio";
    std::filesystem::create_directories(d + "/wavs");
    fuzz::write_file(d + "/wavs/LJ001-0001.wav", "RIFF");
    fuzz::write_file(d + "/beside.wav", "RIFF");
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Mode& mode = kModes[data[0] & 7];
  const std::string content(reinterpret_cast<const char*>(data) + 1, size - 1);
  io::Manifest m;
  try {
    m = io::parse_manifest(content, mode.source, audio_dir(), mode.format);
  } catch (const Error&) {
    return 0;
  }
  // A manifest with no usable row is an error, never an empty result.
  FUZZ_CHECK(!m.entries.empty(), "no entries and no error");
  FUZZ_CHECK(m.format != io::ManifestFormat::Auto, "the parsed format is not reported");
  FUZZ_CHECK(mode.format == io::ManifestFormat::Auto || m.format == mode.format, "a forced format was not used");
  std::set<std::string> ids;
  int previous_line = 0;
  for (const io::ManifestEntry& e : m.entries) {
    FUZZ_CHECK(!e.id.empty(), "an entry on line " + std::to_string(e.line) + " has an empty id");
    FUZZ_CHECK(ids.insert(e.id).second, "id \"" + e.id + "\" accepted twice");
    FUZZ_CHECK(!e.audio_path.empty(), "entry \"" + e.id + "\" has no audio path");
    FUZZ_CHECK(e.line > previous_line, "entries out of line order at \"" + e.id + "\"");
    previous_line = e.line;
    FUZZ_CHECK(e.speaker >= -1, "entry \"" + e.id + "\" has speaker " + std::to_string(e.speaker));
  }
  for (const io::ManifestRejection& r : m.rejected) {
    FUZZ_CHECK(r.line >= 1, "rejection without a line number: " + r.reason);
    FUZZ_CHECK(!r.reason.empty(), "rejection without a reason on line " + std::to_string(r.line));
  }
  return 0;
}
