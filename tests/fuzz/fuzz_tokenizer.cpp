// io/tokenizer: Tokenizer::from_dir on a model directory holding the input's vocab.json and,
// when given, tokenizer_config.json, then encode() on each text.
//
// Input: VOCAB_JSON [SEP CONFIG_JSON [SEP TEXT]...] with SEP = "\n==\n". A raw newline cannot
// occur inside a JSON string, so the separator never splits a valid JSON document.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/tokenizer.h"

using namespace vitscuda;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    // uroman (is_uroman=true) is a Python process per call, far too slow per input: its missing-install
    // error path is fuzzed instead. The phoneme front-end (libespeak-ng) runs for real.
    ::setenv("VITSCUDA_UROMAN_PYTHON", "/nonexistent/uroman-python", 1);
    const std::string d = fuzz::scratch_dir() + "/model";
    std::filesystem::create_directories(d);
    return d;
  }();
  const std::vector<std::string> parts =
      fuzz::split(std::string(reinterpret_cast<const char*>(data), size), "\n==\n");
  fuzz::write_file(dir + "/vocab.json", parts[0]);
  const std::string config_path = dir + "/tokenizer_config.json";
  if (parts.size() > 1) {
    fuzz::write_file(config_path, parts[1]);
  } else {
    std::filesystem::remove(config_path);
  }

  io::Tokenizer tokenizer;
  try {
    tokenizer = io::Tokenizer::from_dir(dir);
  } catch (const Error&) {
    return 0;
  }
  FUZZ_CHECK(tokenizer.vocab_size() > 0, "accepted an empty vocabulary");
  // The ids an encoding may contain: the vocabulary's (an accepted vocab.json parses).
  std::set<int64_t> vocab_ids;
  const nlohmann::ordered_json vocab = nlohmann::ordered_json::parse(parts[0]);
  for (const auto& item : vocab.items()) vocab_ids.insert(item.value().get<int64_t>());
  FUZZ_CHECK(vocab_ids.size() <= tokenizer.vocab_size(), parts[0]);
  try {
    FUZZ_CHECK(tokenizer.pad_id() >= 0, "negative pad id");
  } catch (const Error&) {
    // The pad token need not be in the vocabulary.
  }
  for (size_t i = 2; i < parts.size(); ++i) {
    io::TokenizerResult result;
    try {
      result = tokenizer.encode(parts[i]);
    } catch (const Error&) {
      continue;
    }
    FUZZ_CHECK(!result.ids.empty(), "encode returned no ids for: " + parts[i]);
    for (int32_t id : result.ids)
      FUZZ_CHECK(vocab_ids.count(id) || (tokenizer.add_blank() && id == tokenizer.blank_id()),
                 "id " + std::to_string(id) + " is not in the vocabulary, for: " + parts[i]);
  }
  return 0;
}
