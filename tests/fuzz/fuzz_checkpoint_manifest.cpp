// io/checkpoint: verify_checkpoint on a checkpoint directory whose MANIFEST.json is the input and
// whose other files are fixed (fuzz_support.h).
//
// Input: one mode byte, then MANIFEST.json. Mode bit 0 recomputes manifest_crc32 the way the
// writer does (when the input is a JSON object), so that mutations get past the self-check to
// the field and file checks; bit 1 names the directory step-7 instead of checkpoint, which adds
// the check of the manifest's step against the name.
#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/checkpoint.h"
#include "io/crc32.h"
#include "io/json_input.h"

using namespace vitscuda;

namespace {

std::string make_dir(const std::string& name) {
  const std::string dir = fuzz::scratch_dir() + "/" + name;
  std::filesystem::create_directories(dir + "/" + fuzz::kCheckpointFixtureSubdir);
  for (const fuzz::FixtureFile& f : fuzz::checkpoint_fixture_files()) fuzz::write_file(dir + "/" + f.name, f.content);
  return dir;
}

std::string with_fixed_crc(const std::string& text) {
  nlohmann::json j;
  try {
    // The reader's depth limit: dump() below recurses once per level.
    j = io::parse_json_input<nlohmann::json>("MANIFEST.json", text);
  } catch (const std::exception&) {
    return text;  // not JSON, or too deep: the reader gets it as it is
  }
  if (!j.is_object()) return text;
  j.erase("manifest_crc32");
  const std::string body = j.dump();
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08x", io::crc32(body.data(), body.size()));
  j["manifest_crc32"] = hex;
  return j.dump(2);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const std::string named = make_dir("step-7");
  static const std::string plain = make_dir("checkpoint");
  const uint8_t mode = data[0];
  const std::string& dir = (mode & 2) ? named : plain;
  std::string manifest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (mode & 1) manifest = with_fixed_crc(manifest);
  fuzz::write_file(dir + "/" + io::kCheckpointManifestName, manifest);

  io::CheckpointInfo info;
  try {
    info = io::verify_checkpoint(dir);
  } catch (const Error&) {
    return 0;
  }
  // Accepted: every listed file is one of the fixture's, with its size.
  for (const io::CheckpointFile& f : info.files) {
    bool known = false;
    for (const fuzz::FixtureFile& fixture : fuzz::checkpoint_fixture_files())
      if (f.name == fixture.name) known = known || f.size == fixture.content.size();
    FUZZ_CHECK(known, "verified a file that is not in the fixture: " + f.name);
    FUZZ_CHECK(info.has_file(f.name), f.name);
  }
  FUZZ_CHECK(!(mode & 2) || info.step == 7, "step " + std::to_string(info.step) + " accepted in step-7");
  return 0;
}
