// Manifest parsing: every format, RFC 4180 quoting, and malformed rows becoming rejections that
// carry their line numbers instead of stopping the whole manifest.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "io/manifest.h"
#include "support/test_support.h"

using namespace vitscuda;
using io::Manifest;
using io::ManifestFormat;
namespace fs = std::filesystem;

namespace {

void touch(const std::string& path) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << "x";
}

void write(const std::string& path, const std::string& content) { std::ofstream(path, std::ios::binary) << content; }

const io::ManifestRejection* rejection_on_line(const Manifest& m, int line) {
  for (const auto& r : m.rejected)
    if (r.line == line) return &r;
  return nullptr;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Manifest, FormatNames) {
  EXPECT_EQ(io::parse_manifest_format("auto"), ManifestFormat::Auto);
  EXPECT_EQ(io::parse_manifest_format("LJSpeech"), ManifestFormat::LJSpeech);
  EXPECT_EQ(io::parse_manifest_format("csv"), ManifestFormat::Csv);
  EXPECT_EQ(io::parse_manifest_format("tsv"), ManifestFormat::Tsv);
  EXPECT_EQ(io::parse_manifest_format("jsonl"), ManifestFormat::Jsonl);
  EXPECT_THROW(io::parse_manifest_format("xml"), Error);
}

TEST(Manifest, LJSpeechUsesNormalizedColumnAndFindsAudioInWavsOrBeside) {
  const std::string dir = vitscuda::testing::temp_dir("manifest_ljspeech");
  touch(dir + "/wavs/LJ001-0001.wav");
  touch(dir + "/beside.wav");
  const std::string content =
      "LJ001-0001|Printing, in 1865|Printing, in eighteen sixty-five\n"
      "\n"                               // blank: skipped, but counted
      "beside|He said \"hi|\n"           // bare quote kept; empty normalized -> text
      "just-one-column\n"                // line 4: malformed
      "a|b|c|d\n"                        // line 5: malformed
      "missing|Not there|Not there\r\n"  // CRLF
      "|no id|no id\n";                  // line 7: no id
  const Manifest m = io::parse_manifest(content, dir + "/metadata.csv", dir);
  EXPECT_EQ(m.format, ManifestFormat::LJSpeech);
  ASSERT_EQ(m.entries.size(), 3u);
  EXPECT_EQ(m.entries[0].id, "LJ001-0001");
  EXPECT_EQ(m.entries[0].text, "Printing, in eighteen sixty-five");
  EXPECT_EQ(m.entries[0].audio_path, (fs::path(dir) / "wavs/LJ001-0001.wav").string());
  EXPECT_EQ(m.entries[0].line, 1);
  EXPECT_EQ(m.entries[0].speaker, -1);
  EXPECT_EQ(m.entries[1].id, "beside");
  EXPECT_EQ(m.entries[1].text, "He said \"hi");
  EXPECT_EQ(m.entries[1].audio_path, (fs::path(dir) / "beside.wav").string());
  EXPECT_EQ(m.entries[1].line, 3);
  // Neither place has it: the wavs/ directory exists, so that is where it is expected.
  EXPECT_EQ(m.entries[2].audio_path, (fs::path(dir) / "wavs/missing.wav").string());
  EXPECT_EQ(m.entries[2].text, "Not there");  // no trailing \r
  ASSERT_EQ(m.rejected.size(), 3u);
  ASSERT_NE(rejection_on_line(m, 4), nullptr);
  EXPECT_EQ(rejection_on_line(m, 4)->reason, "bad_columns");
  ASSERT_NE(rejection_on_line(m, 5), nullptr);
  EXPECT_EQ(rejection_on_line(m, 5)->reason, "bad_columns");
  EXPECT_NE(rejection_on_line(m, 5)->detail.find("found 4"), std::string::npos);
  ASSERT_NE(rejection_on_line(m, 7), nullptr);
  EXPECT_EQ(rejection_on_line(m, 7)->reason, "missing_field");
}

TEST(Manifest, LJSpeechWithoutWavsDirLooksBesideTheManifest) {
  const std::string dir = vitscuda::testing::temp_dir("manifest_ljspeech_flat");
  const Manifest m = io::parse_manifest("x|hello\n", dir + "/metadata.csv", dir);
  ASSERT_EQ(m.entries.size(), 1u);
  EXPECT_EQ(m.entries[0].audio_path, (fs::path(dir) / "x.wav").string());
}

TEST(Manifest, CsvQuotingFollowsRfc4180) {
  const std::string dir = vitscuda::testing::temp_dir("manifest_csv");
  const std::string content =
      "\xEF\xBB\xBFpath,Text,speaker\r\n"           // BOM, mixed case, CRLF
      "\"a,b.wav\",\"Hello, \"\"world\"\"\",2\r\n"  // line 2: delimiter and doubled quotes
      "multi.wav,\"first line\nsecond line\",0\n"   // lines 3-4: newline inside quotes
      "plain.wav,plain text,\n"                     // line 5: empty speaker -> none
      "stray.wav,5\" tall,1\n"                      // line 6: stray quote in an unquoted field
      "junk.wav,\"closed\"junk,1\n"                 // line 7: text after closing quote
      "too,many,columns,here\n"                     // line 8
      ",no path,1\n"                                // line 9
      "spk.wav,named speaker,p225\n"                // line 10
      "plain.wav,same id again,0\n"                 // line 11
      "/abs/dir/x.flac,absolute,3\n"                // line 12
      "open.wav,\"never closed,1\n"                 // line 13: unterminated quote
      "after.wav,still parsed,4\n";                 // line 14
  const Manifest m = io::parse_manifest(content, dir + "/list.csv", dir);
  EXPECT_EQ(m.format, ManifestFormat::Csv);
  ASSERT_EQ(m.entries.size(), 6u);
  EXPECT_EQ(m.entries[0].id, "a,b");
  EXPECT_EQ(m.entries[0].audio_path, (fs::path(dir) / "a,b.wav").string());
  EXPECT_EQ(m.entries[0].text, "Hello, \"world\"");
  EXPECT_EQ(m.entries[0].speaker, 2);
  EXPECT_EQ(m.entries[0].line, 2);
  EXPECT_EQ(m.entries[1].text, "first line\nsecond line");
  EXPECT_EQ(m.entries[1].line, 3);
  EXPECT_EQ(m.entries[2].id, "plain");
  EXPECT_EQ(m.entries[2].line, 5);
  EXPECT_EQ(m.entries[2].speaker, -1);
  EXPECT_EQ(m.entries[3].text, "5\" tall");
  EXPECT_EQ(m.entries[3].line, 6);
  EXPECT_EQ(m.entries[4].audio_path, "/abs/dir/x.flac");
  EXPECT_EQ(m.entries[4].speaker, 3);
  EXPECT_EQ(m.entries[4].line, 12);
  EXPECT_EQ(m.entries[5].id, "after");
  EXPECT_EQ(m.entries[5].line, 14);

  const std::vector<std::pair<int, std::string>> expected = {{7, "bad_quoting"},   {8, "bad_columns"},
                                                             {9, "missing_field"}, {10, "bad_speaker"},
                                                             {11, "duplicate_id"}, {13, "bad_quoting"}};
  ASSERT_EQ(m.rejected.size(), expected.size());
  for (const auto& [line, reason] : expected) {
    const io::ManifestRejection* r = rejection_on_line(m, line);
    ASSERT_NE(r, nullptr) << "no rejection on line " << line;
    EXPECT_EQ(r->reason, reason) << "line " << line << ": " << r->detail;
  }
  EXPECT_NE(rejection_on_line(m, 11)->detail.find("line 5"), std::string::npos);
  EXPECT_NE(rejection_on_line(m, 10)->detail.find("p225"), std::string::npos);
}

TEST(Manifest, PipeDelimitedCsvWithHeaderIsNotLJSpeech) {
  const std::string dir = vitscuda::testing::temp_dir("manifest_pipe_csv");
  const Manifest m = io::parse_manifest("audio|transcript|speaker_id\nx.wav|hello there|1\n", dir + "/m.csv", dir);
  EXPECT_EQ(m.format, ManifestFormat::Csv);
  ASSERT_EQ(m.entries.size(), 1u);
  EXPECT_EQ(m.entries[0].text, "hello there");
  EXPECT_EQ(m.entries[0].speaker, 1);
}

TEST(Manifest, TsvSplitsOnTabsWithoutQuoting) {
  const std::string dir = vitscuda::testing::temp_dir("manifest_tsv");
  const std::string content =
      "client_id\tpath\tsentence\tup_votes\n"
      "abc\tclips/one.mp3\t\"Hello,\" he said.\t2\n"
      "abc\tclips/two.mp3\tmissing a column\n"
      "abc\tclips/three.mp3\tfine\t0\n";
  const Manifest m = io::parse_manifest(content, dir + "/validated.tsv", dir);
  EXPECT_EQ(m.format, ManifestFormat::Tsv);
  ASSERT_EQ(m.entries.size(), 2u);
  EXPECT_EQ(m.entries[0].text, "\"Hello,\" he said.");
  EXPECT_EQ(m.entries[0].id, "clips/one");
  EXPECT_EQ(m.entries[0].audio_path, (fs::path(dir) / "clips/one.mp3").string());
  EXPECT_EQ(m.entries[1].line, 4);
  ASSERT_EQ(m.rejected.size(), 1u);
  EXPECT_EQ(m.rejected[0].line, 3);
  EXPECT_EQ(m.rejected[0].reason, "bad_columns");
  EXPECT_EQ(m.rejected[0].id, "clips/two");
}

TEST(Manifest, JsonlRowsAndMalformedLines) {
  const std::string dir = vitscuda::testing::temp_dir("manifest_jsonl");
  const std::string content =
      "{\"audio\": \"a.wav\", \"text\": \"first\", \"speaker\": 1}\n"
      "{\"path\": \"b.wav\", \"text\": \"second\", \"speaker\": \"2\", \"id\": \"bee\"}\n"
      "{\"Audio_Filepath\": \"c.wav\", \"Text\": \"keys ignore case\", \"speaker\": null}\n"
      "{\"audio\": \"d.wav\"}\n"                                    // line 4: no text
      "{\"audio\": \"e.wav\", \"text\": \"x\",}\n"                  // line 5: bad JSON
      "[1, 2]\n"                                                    // line 6: not an object
      "{\"text\": \"no audio\"}\n"                                  // line 7
      "{\"audio\": \"f.wav\", \"text\": \"x\", \"speaker\": -1}\n"  // line 8
      "{\"audio\": \"g.wav\", \"text\": 5}\n";                      // line 9
  const Manifest m = io::parse_manifest(content, dir + "/m.jsonl", dir);
  EXPECT_EQ(m.format, ManifestFormat::Jsonl);
  ASSERT_EQ(m.entries.size(), 3u);
  EXPECT_EQ(m.entries[0].id, "a");
  EXPECT_EQ(m.entries[0].speaker, 1);
  EXPECT_EQ(m.entries[1].id, "bee");
  EXPECT_EQ(m.entries[1].speaker, 2);
  EXPECT_EQ(m.entries[2].text, "keys ignore case");
  EXPECT_EQ(m.entries[2].speaker, -1);
  EXPECT_EQ(m.entries[2].line, 3);
  const std::vector<std::pair<int, std::string>> expected = {{4, "missing_field"}, {5, "bad_json"},
                                                             {6, "bad_json"},      {7, "missing_field"},
                                                             {8, "bad_speaker"},   {9, "missing_field"}};
  ASSERT_EQ(m.rejected.size(), expected.size());
  for (const auto& [line, reason] : expected) {
    const io::ManifestRejection* r = rejection_on_line(m, line);
    ASSERT_NE(r, nullptr) << "no rejection on line " << line;
    EXPECT_EQ(r->reason, reason) << "line " << line << ": " << r->detail;
  }
  EXPECT_EQ(rejection_on_line(m, 4)->id, "d");
}

TEST(Manifest, ExtensionAndFormatOverride) {
  const std::string dir = vitscuda::testing::temp_dir("manifest_override");
  // JSONL content under a .txt name is recognised by its first character.
  EXPECT_EQ(io::parse_manifest("{\"audio\":\"a.wav\",\"text\":\"t\"}\n", dir + "/m.txt", dir).format,
            ManifestFormat::Jsonl);
  // Forced LJSpeech for a file whose extension says nothing.
  const Manifest lj = io::parse_manifest("x|hello|hello\n", dir + "/list.txt", dir, ManifestFormat::LJSpeech);
  EXPECT_EQ(lj.entries.size(), 1u);
  // Forced CSV without a header: the error names the columns it needed.
  const std::string msg =
      message_of([&] { io::parse_manifest("x|hello|hello\n", dir + "/l.txt", dir, ManifestFormat::Csv); });
  EXPECT_NE(msg.find("needs an audio column"), std::string::npos) << msg;
}

TEST(Manifest, UnusableManifestsAreErrors) {
  const std::string dir = vitscuda::testing::temp_dir("manifest_errors");
  EXPECT_NE(message_of([&] { io::parse_manifest("  \n\n", dir + "/m.csv", dir); }).find("is empty"), std::string::npos);
  const std::string none = message_of([&] { io::parse_manifest("bad\nalso bad\n", dir + "/m.csv", dir); });
  EXPECT_NE(none.find("cannot tell the format"), std::string::npos) << none;
  const std::string all_bad =
      message_of([&] { io::parse_manifest("a|b|c|d\nx\n", dir + "/m.csv", dir, ManifestFormat::LJSpeech); });
  EXPECT_NE(all_bad.find("no usable row"), std::string::npos) << all_bad;
  EXPECT_NE(all_bad.find("line 1"), std::string::npos) << all_bad;
  const std::string header =
      message_of([&] { io::parse_manifest("file_name,words\nx.wav,hi\n", dir + "/m.tsv", dir, ManifestFormat::Csv); });
  EXPECT_NE(header.find("file_name,words"), std::string::npos) << header;
  EXPECT_NE(message_of([&] { io::parse_manifest("[{\"audio\":\"a\"}]", dir + "/m.json", dir); }).find("JSON array"),
            std::string::npos);
  EXPECT_NE(message_of([&] { io::read_manifest(dir + "/absent.csv", dir); }).find("absent.csv"), std::string::npos);
}

TEST(Manifest, ReadManifestFromFile) {
  const std::string dir = vitscuda::testing::temp_dir("manifest_file");
  write(dir + "/metadata.csv", "one|Hello world.|Hello world.\ntwo|Second.|Second.\n");
  const Manifest m = io::read_manifest(dir + "/metadata.csv", dir);
  EXPECT_EQ(m.format, ManifestFormat::LJSpeech);
  ASSERT_EQ(m.entries.size(), 2u);
  EXPECT_EQ(m.entries[1].id, "two");
  EXPECT_EQ(m.entries[1].line, 2);
}
