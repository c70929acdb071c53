// The text front-ends against transformers' VitsTokenizer: tests/data/io/frontend_cases.json and the tokenizer
// directories under tests/data/io/frontends/ are written by tools/golden/make_frontend_cases.py (transformers,
// uroman, phonemizer with espeak-ng).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/tokenizer.h"
#include "io/uroman.h"
#include "support/test_support.h"

namespace vitscuda::io {
namespace {

using nlohmann::ordered_json;
using vitscuda::testing::data_path;

const ordered_json& cases() {
  static const ordered_json all = [] {
    std::ifstream in(data_path("io/frontend_cases.json"));
    EXPECT_TRUE(in) << "missing tests/data/io/frontend_cases.json";
    return ordered_json::parse(in);
  }();
  return all;
}

const ordered_json& tokenizer_cases(const std::string& name) {
  for (const ordered_json& t : cases()["tokenizers"])
    if (t["name"] == name) return t;
  ADD_FAILURE() << "no tokenizer " << name << " in frontend_cases.json";
  static const ordered_json none;
  return none;
}

Tokenizer tokenizer_of(const ordered_json& t) {
  return Tokenizer::from_dir(data_path("io/" + t["dir"].get<std::string>()));
}

using vitscuda::testing::error_of;

// transformers' ids, where a symbol outside the vocabulary (with no unk_token in it) is None (JSON null):
// such a symbol is dropped here instead, with the blank after it, since None is no id a model can take.
std::vector<int32_t> expected_ids(const ordered_json& c, bool add_blank) {
  std::vector<int32_t> ids;
  const ordered_json& raw = c["ids"];
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i].is_null()) {
      if (add_blank) ++i;
      continue;
    }
    ids.push_back(raw[i].get<int32_t>());
  }
  return ids;
}

bool has_null_id(const ordered_json& c) {
  for (const ordered_json& id : c["ids"])
    if (id.is_null()) return true;
  return false;
}

TEST(Frontends, TokenizerConfigsNameTheirFrontEnd) {
  EXPECT_EQ(tokenizer_of(tokenizer_cases("vits_ljs")).front_end(), FrontEnd::Phonemes);
  EXPECT_EQ(tokenizer_of(tokenizer_cases("hin_uroman")).front_end(), FrontEnd::Uroman);
  EXPECT_EQ(Tokenizer::from_dir(data_path("io/mms_tts_eng")).front_end(), FrontEnd::Characters);
  EXPECT_STREQ(front_end_name(FrontEnd::Phonemes), "phonemes");
  EXPECT_NE(tokenizer_of(tokenizer_cases("vits_ljs")).front_end_description().find("espeak-ng 1."), std::string::npos);
}

// Natively with libespeak-ng: every case gives phonemizer's string and transformers' ids.
TEST(Frontends, PhonemesMatchTransformersOnEveryGoldenCase) {
  const ordered_json& t = tokenizer_cases("vits_ljs");
  const Tokenizer tok = tokenizer_of(t);
  ASSERT_GE(t["cases"].size(), 20u);
  size_t identical = 0, with_none = 0;
  for (const ordered_json& c : t["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const TokenizerResult r = tok.encode(text);
    EXPECT_EQ(r.front_end_text, c["front_end_text"].get<std::string>()) << "\"" << text << "\"";
    EXPECT_EQ(r.ids, expected_ids(c, tok.add_blank())) << "\"" << text << "\"";
    if (has_null_id(c)) {
      // Listed difference: "(", ")", "[", "]" are punctuation phonemizer keeps but the VITS symbols lack; with
      // no unk_token in the vocabulary transformers gives None for them, and here they are dropped and reported.
      ++with_none;
      EXPECT_FALSE(r.dropped.empty()) << "\"" << text << "\"";
    } else {
      identical += r.ids == expected_ids(c, tok.add_blank()) && r.dropped.empty();
    }
  }
  EXPECT_EQ(identical + with_none, t["cases"].size());
  EXPECT_EQ(with_none, 1u) << "only the parentheses case holds symbols outside the VITS vocabulary";
}

// The tokenizer's part after uroman, from the golden romanisations: needs no Python.
TEST(Frontends, RomanisedTextGivesTransformersIds) {
  const ordered_json& t = tokenizer_cases("hin_uroman");
  const Tokenizer tok = tokenizer_of(t);
  ASSERT_GE(t["cases"].size(), 20u);
  for (const ordered_json& c : t["cases"]) {
    const std::string text = c["text"].get<std::string>();
    ASSERT_FALSE(has_null_id(c)) << "\"" << text << "\"";
    const TokenizerResult r = tok.encode_front_end_text(c["front_end_text"].get<std::string>(), text);
    EXPECT_EQ(r.ids, expected_ids(c, tok.add_blank())) << "\"" << text << "\"";
  }
}

// uroman itself: the project's environment (scripts/setup.sh --with-uroman). scripts/test.sh installs it and sets
// VITSCUDA_REQUIRE_UROMAN, so there a missing uroman fails; elsewhere the test says how to install it.
TEST(Frontends, UromanMatchesTransformersOnEveryGoldenCase) {
  if (!uroman_available()) {
    if (std::getenv("VITSCUDA_REQUIRE_UROMAN"))
      FAIL() << "VITSCUDA_REQUIRE_UROMAN is set but uroman is not installed: " << error_of([] { uroman_python(); });
    GTEST_SKIP() << "uroman is not installed; run `" << kUromanInstallCommand << "` (scripts/test.sh does)";
  }
  const ordered_json& t = tokenizer_cases("hin_uroman");
  const Tokenizer tok = tokenizer_of(t);
  std::vector<std::string> texts;
  for (const ordered_json& c : t["cases"]) texts.push_back(c["text"].get<std::string>());
  // All texts in one batch (one uroman process), as prepare does.
  const std::vector<std::string> romanised = tok.front_end_texts(texts);
  ASSERT_EQ(romanised.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    const ordered_json& c = t["cases"][i];
    EXPECT_EQ(romanised[i], c["front_end_text"].get<std::string>()) << "\"" << texts[i] << "\"";
    EXPECT_EQ(tok.encode_front_end_text(romanised[i], texts[i]).ids, expected_ids(c, tok.add_blank()))
        << "\"" << texts[i] << "\"";
  }
  // One text alone goes the same way.
  EXPECT_EQ(tok.encode(texts[0]).ids, expected_ids(t["cases"][0], tok.add_blank()));
}

TEST(Frontends, MissingUromanNamesTheInstallCommand) {
  const char* saved = std::getenv("VITSCUDA_UROMAN_PYTHON");
  const std::string saved_value = saved ? saved : "";
  ::setenv("VITSCUDA_UROMAN_PYTHON", "/nonexistent/python", 1);
  const Tokenizer tok = tokenizer_of(tokenizer_cases("hin_uroman"));
  const std::string msg = error_of([&] { tok.encode("नमस्ते"); });
  // ASCII text needs no romanisation, so no uroman either.
  const std::vector<int32_t> ascii_ids = tok.encode("namaste").ids;
  if (saved) {
    ::setenv("VITSCUDA_UROMAN_PYTHON", saved_value.c_str(), 1);
  } else {
    ::unsetenv("VITSCUDA_UROMAN_PYTHON");
  }
  EXPECT_NE(msg.find("is_uroman=true"), std::string::npos) << msg;
  EXPECT_NE(msg.find("scripts/setup.sh --with-uroman"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/nonexistent/python"), std::string::npos) << msg;
  EXPECT_EQ(ascii_ids.size(), 2 * 7 + 1u);
}

}  // namespace
}  // namespace vitscuda::io
