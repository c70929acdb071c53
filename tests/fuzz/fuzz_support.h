// Shared by the libFuzzer targets: a per-process scratch directory (for readers that take a
// path) and an invariant check that aborts, so that libFuzzer records the input.
//
// A target catches vitscuda::Error, the documented outcome for bad input, and nothing else:
// any other exception escapes LLVMFuzzerTestOneInput, terminates the process and is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#define FUZZ_CHECK(cond, what)                                                                     \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::fprintf(stderr, "fuzz invariant violated at %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                                     \
      std::abort();                                                                                \
    }                                                                                              \
  } while (0)

namespace vitscuda::fuzz {

// A directory of its own for this process, under $VITSCUDA_FUZZ_SCRATCH (scripts/fuzz.sh sets it
// and removes it afterwards), else /dev/shm, else /tmp. Removed at a normal exit.
inline const std::string& scratch_dir() {
  struct Scratch {
    std::string path;
    Scratch() {
      std::string root;
      if (const char* env = std::getenv("VITSCUDA_FUZZ_SCRATCH")) root = env;
      if (root.empty()) root = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
      std::filesystem::create_directories(root);
      std::string templ = root + "/vitscuda-fuzz-XXXXXX";
      if (!::mkdtemp(templ.data())) {
        std::perror(("fuzz: cannot create a scratch directory in " + root).c_str());
        std::abort();
      }
      path = templ;
    }
    ~Scratch() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Scratch scratch;
  return scratch.path;
}

// Replaces `path` with exactly these bytes; a harness failure here is not a finding in the reader.
inline void write_file(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (size) out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}
inline void write_file(const std::string& path, const std::string& text) { write_file(path, text.data(), text.size()); }

// Splits `input` at every occurrence of `separator`.
inline std::vector<std::string> split(const std::string& input, const std::string& separator) {
  std::vector<std::string> parts;
  size_t pos = 0;
  for (;;) {
    const size_t at = input.find(separator, pos);
    if (at == std::string::npos) {
      parts.push_back(input.substr(pos));
      return parts;
    }
    parts.push_back(input.substr(pos, at - pos));
    pos = at + separator.size();
  }
}

}  // namespace vitscuda::fuzz

namespace vitscuda::fuzz {

// The files of the checkpoint directory that fuzz_checkpoint_manifest verifies MANIFEST.json
// against; make_corpus writes its seed manifests for the same files.
struct FixtureFile {
  const char* name;
  std::string content;
};
inline const std::vector<FixtureFile>& checkpoint_fixture_files() {
  static const std::vector<FixtureFile> files = {
      {"model.safetensors", std::string("\x08\0\0\0\0\0\0\0{}      ", 16)},
      {"trainer_state.json", "{\"format\": \"vitscuda-trainer-state\"}\n"},
      {"empty.bin", ""},
  };
  return files;
}
// A subdirectory in the fixture: a manifest naming it lists something that is not a regular file.
inline constexpr const char* kCheckpointFixtureSubdir = "nested";

}  // namespace vitscuda::fuzz
