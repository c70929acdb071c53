#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/tokenizer.h"
#include "support/test_support.h"

namespace vitscuda::io {
namespace {

using nlohmann::ordered_json;
using vitscuda::testing::data_path;
using vitscuda::testing::temp_dir;

// tests/data/io/tokenizer_cases.json and tests/data/io/mms_tts_eng/ are written by
// tools/golden/make_tokenizer_cases.py from transformers' VitsTokenizer.
ordered_json load_cases() {
  std::ifstream in(data_path("io/tokenizer_cases.json"));
  EXPECT_TRUE(in) << "missing tokenizer_cases.json";
  return ordered_json::parse(in);
}

using vitscuda::testing::error_of;

std::vector<std::pair<std::string, int32_t>> vocab_of(const ordered_json& t) {
  std::vector<std::pair<std::string, int32_t>> vocab;
  for (auto it = t["vocab"].begin(); it != t["vocab"].end(); ++it) vocab.emplace_back(it.key(), it.value().get<int32_t>());
  return vocab;
}

// Every golden case; transformers returns no ids where nothing of the text is in the
// vocabulary, which we turn into an error listing the dropped characters.
void check_cases(const Tokenizer& tok, const ordered_json& t) {
  ASSERT_GE(t["cases"].size(), 10u);
  for (const ordered_json& c : t["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto expected_ids = c["ids"].get<std::vector<int32_t>>();
    const auto expected_dropped = c["dropped"].get<std::vector<std::string>>();
    if (expected_ids.empty()) {
      const std::string msg = error_of([&] { tok.encode(text); });
      EXPECT_NE(msg.find("no character of the text is in the tokenizer vocabulary"), std::string::npos)
          << t["name"] << ": \"" << text << "\" gave \"" << msg << "\"";
      for (const std::string& ch : expected_dropped)
        EXPECT_NE(msg.find("\"" + ch + "\""), std::string::npos) << "\"" << ch << "\" not listed in: " << msg;
      continue;
    }
    const TokenizerResult r = tok.encode(text);
    EXPECT_EQ(r.ids, expected_ids) << t["name"] << ": \"" << text << "\"";
    EXPECT_EQ(r.dropped, expected_dropped) << t["name"] << ": \"" << text << "\"";
  }
}

TEST(Tokenizer, MatchesTransformersForMmsTtsEngDirectory) {
  const ordered_json cases = load_cases();
  const ordered_json& t = cases["tokenizers"][0];
  ASSERT_EQ(t["name"], "mms_tts_eng");
  const Tokenizer tok = Tokenizer::from_dir(data_path("io/mms_tts_eng"));
  EXPECT_EQ(tok.vocab_size(), 38u);
  EXPECT_TRUE(tok.add_blank());
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.blank_id(), 0);
  check_cases(tok, t);
}

TEST(Tokenizer, MatchesTransformersFromVocabMap) {
  const ordered_json cases = load_cases();
  for (const ordered_json& t : cases["tokenizers"]) {
    const auto vocab = vocab_of(t);
    const std::map<std::string, int32_t> as_map(vocab.begin(), vocab.end());
    // mms-tts keys are single characters, so the key order does not matter; the custom
    // vocabulary's multi-character keys need file order.
    if (t["name"] != "custom_case_keys")
      check_cases(Tokenizer::from_vocab(as_map, t["add_blank"].get<bool>(), true, t["pad_token"].get<std::string>()), t);
    check_cases(Tokenizer::from_ordered_vocab(vocab, t["add_blank"].get<bool>(), true, t["pad_token"].get<std::string>()),
                t);
  }
}

TEST(Tokenizer, SpecialTokenKStillSplitsWithoutBlank) {
  // Same rule as the golden cases, shown on a tiny vocabulary: "k" is emitted alone.
  const Tokenizer tok = Tokenizer::from_vocab({{"k", 0}, {"a", 1}, {" ", 2}}, true, true, "k");
  EXPECT_EQ(tok.encode("a").ids, (std::vector<int32_t>{0, 1, 0}));
  EXPECT_EQ(tok.encode("ka").ids, (std::vector<int32_t>{0, 0, 1, 0}));
  EXPECT_EQ(tok.encode("ak").ids, (std::vector<int32_t>{0, 1, 0, 0}));
  EXPECT_EQ(tok.encode("aka").ids, (std::vector<int32_t>{0, 1, 0, 0, 0, 1, 0}));
}

TEST(Tokenizer, EmptyTextIsAnError) {
  const Tokenizer tok = Tokenizer::from_dir(data_path("io/mms_tts_eng"));
  for (const char* text : {"", "   ", "\t\n ", "\xC2\xA0"}) {
    const std::string msg = error_of([&] { tok.encode(text); });
    EXPECT_NE(msg.find("empty text"), std::string::npos) << "\"" << text << "\" gave \"" << msg << "\"";
  }
}

TEST(Tokenizer, TextWithoutVocabCharactersListsThem) {
  const Tokenizer tok = Tokenizer::from_dir(data_path("io/mms_tts_eng"));
  const std::string msg = error_of([&] { tok.encode("?! 7 😀"); });
  for (const char* ch : {"\"?\"", "\"!\"", "\"7\"", "\"😀\""}) EXPECT_NE(msg.find(ch), std::string::npos) << msg;
}

TEST(Tokenizer, InvalidUtf8IsAnError) {
  const Tokenizer tok = Tokenizer::from_dir(data_path("io/mms_tts_eng"));
  EXPECT_NE(error_of([&] { tok.encode("ab\xC3"); }).find("UTF-8"), std::string::npos);
  EXPECT_NE(error_of([&] { tok.encode("a\xFF"); }).find("UTF-8"), std::string::npos);
  EXPECT_NE(error_of([&] { tok.encode("\xC0\xAF"); }).find("UTF-8"), std::string::npos);  // overlong "/"
}

TEST(Tokenizer, WithoutNormalizationKeepsCaseAndSpaces) {
  // transformers would map unknown characters to <unk> (an id past the embedding table); they are dropped instead.
  const Tokenizer tok = Tokenizer::from_vocab({{"_", 0}, {"a", 1}, {"B", 2}, {" ", 3}}, false, false, "_");
  const TokenizerResult r = tok.encode(" aB b");
  EXPECT_EQ(r.ids, (std::vector<int32_t>{3, 1, 2, 3}));
  EXPECT_EQ(r.dropped, (std::vector<std::string>{"b"}));
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(Tokenizer, ReadsTokenizerConfigKeys) {
  const std::string dir = temp_dir("tokenizer_config_keys");
  write_file(dir + "/vocab.json", R"({"<blank>": 0, "a": 1, "b": 2, "|": 3})");
  write_file(dir + "/tokenizer_config.json",
             R"({"add_blank": false, "normalize": true, "phonemize": false, "is_uroman": false,
                 "pad_token": {"content": "|", "lstrip": false, "__type": "AddedToken"}, "language": null})");
  const Tokenizer tok = Tokenizer::from_dir(dir);
  EXPECT_FALSE(tok.add_blank());
  EXPECT_EQ(tok.pad_id(), 3);
  EXPECT_EQ(tok.encode("AB").ids, (std::vector<int32_t>{1, 2}));

  write_file(dir + "/tokenizer_config.json", R"({"add_blank": "yes"})");
  EXPECT_NE(error_of([&] { Tokenizer::from_dir(dir); }).find("'add_blank'"), std::string::npos);
  write_file(dir + "/tokenizer_config.json", R"({"pad_token": 3})");
  EXPECT_NE(error_of([&] { Tokenizer::from_dir(dir); }).find("'pad_token'"), std::string::npos);
}

TEST(Tokenizer, RomanianCommaBelowIsReplaced) {
  // transformers' _preprocess_char for language "ron": t with comma below -> t with cedilla.
  const std::string dir = temp_dir("tokenizer_ron");
  write_file(dir + "/vocab.json", "{\"_\": 0, \"\xC5\xA3\": 1, \"a\": 2}");
  write_file(dir + "/tokenizer_config.json", R"({"language": "ron", "pad_token": "_", "phonemize": false})");
  const TokenizerResult r = Tokenizer::from_dir(dir).encode("\xC8\x9B" "a");
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 1, 0, 2, 0}));
}

TEST(Tokenizer, FrontEndComesFromTheConfig) {
  const std::string dir = temp_dir("tokenizer_front_ends");
  write_file(dir + "/vocab.json", R"({"k": 0, "a": 1})");
  write_file(dir + "/tokenizer_config.json", R"({"phonemize": true, "pad_token": "k"})");
  EXPECT_EQ(Tokenizer::from_dir(dir).front_end(), FrontEnd::Phonemes);
  write_file(dir + "/tokenizer_config.json", R"({"phonemize": false, "is_uroman": true, "pad_token": "k"})");
  EXPECT_EQ(Tokenizer::from_dir(dir).front_end(), FrontEnd::Uroman);
  write_file(dir + "/tokenizer_config.json", R"({"phonemize": false, "pad_token": "k"})");
  EXPECT_EQ(Tokenizer::from_dir(dir).front_end(), FrontEnd::Characters);
  // Both at once: romanised text phonemised as English is no checkpoint's front-end.
  write_file(dir + "/tokenizer_config.json", R"({"phonemize": true, "is_uroman": true, "pad_token": "k"})");
  const std::string msg = error_of([&] { Tokenizer::from_dir(dir); });
  EXPECT_NE(msg.find("phonemize=true together with is_uroman=true"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not supported"), std::string::npos) << msg;
}

TEST(Tokenizer, RejectsBadVocabularies) {
  const std::string dir = temp_dir("tokenizer_bad_vocab");
  EXPECT_NE(error_of([&] { Tokenizer::from_dir(dir); }).find(dir + "/vocab.json"), std::string::npos);
  write_file(dir + "/vocab.json", R"({"a": "one"})");
  EXPECT_NE(error_of([&] { Tokenizer::from_dir(dir); }).find("\"a\""), std::string::npos);
  write_file(dir + "/vocab.json", R"({"a": 1, "b": 2})");  // add_blank needs id 0
  EXPECT_NE(error_of([&] { Tokenizer::from_dir(dir); }).find("id 0"), std::string::npos);
  const Tokenizer no_pad = Tokenizer::from_vocab({{"a", 0}}, true, true, "<pad>");
  EXPECT_NE(error_of([&] { no_pad.pad_id(); }).find("<pad>"), std::string::npos);
}

}  // namespace
}  // namespace vitscuda::io
