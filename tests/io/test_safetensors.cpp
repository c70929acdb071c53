#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "common/error.h"
#include "io/safetensors.h"
#include "support/test_support.h"

namespace vitscuda::io {
namespace {

using vitscuda::testing::data_path;
using vitscuda::testing::temp_dir;

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

uint64_t header_length_of(const std::vector<uint8_t>& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  return n;
}

// A file with an explicit 8-byte length prefix, header text and data bytes.
std::vector<uint8_t> make_file(uint64_t declared_header_length, const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> bytes(8 + header.size() + data_bytes, 0xAB);
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(declared_header_length >> (8 * i));
  for (size_t i = 0; i < header.size(); ++i) bytes[8 + i] = static_cast<uint8_t>(header[i]);
  return bytes;
}
std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes) {
  return make_file(header.size(), header, data_bytes);
}

// Expects from_bytes to throw a message containing every given fragment.
void expect_rejected(const std::vector<uint8_t>& bytes, const std::vector<std::string>& fragments) {
  try {
    SafetensorsFile::from_bytes(bytes, "bad.safetensors");
    FAIL() << "accepted a bad file; expected an error containing '" << fragments.front() << "'";
  } catch (const vitscuda::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << "message does not name the file: " << msg;
    for (const std::string& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

uint32_t f32_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

std::vector<float> values_of(const Tensor& t) { return t.to_float_vector(); }

TEST(Safetensors, RoundTripKeepsOrderOffsetsMetadataAndValues) {
  const std::string dir = temp_dir("safetensors_roundtrip");
  const std::string path = dir + "/model.safetensors";
  // Values exactly representable in f16 and bf16, so every dtype must give them back exactly.
  const std::vector<float> values = {0.0f, -0.0f, 1.0f, -2.5f, 0.15625f, 1024.0f};
  const Tensor t = Tensor::from_vector(values, {2, 3});
  std::vector<SafetensorsWriteEntry> entries = {
      {"z.weight", "F32", {2, 3}, encode_f32(t, "F32")},
      {"a.half", "F16", {3, 2}, encode_f32(t, "F16")},
      {"m.bf", "BF16", {6}, encode_f32(t, "BF16")},
      {"b.double", "F64", {1, 6}, encode_f32(t, "F64")},
      {"scalar", "F32", {}, encode_f32(Tensor::from_vector(std::vector<float>{7.5f}, Shape{}), "F32")},
  };
  write_safetensors(path, entries, {{"format", "pt"}, {"step", "12"}});

  const std::vector<uint8_t> bytes = file_bytes(path);
  const uint64_t header_len = header_length_of(bytes);
  EXPECT_EQ(header_len % 8, 0u);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + header_len);
  EXPECT_EQ(header.rfind("{\"__metadata__\":", 0), 0u) << header;
  // Keys appear in the given order.
  size_t last = 0;
  for (const auto& e : entries) {
    const size_t pos = header.find("\"" + e.name + "\"");
    ASSERT_NE(pos, std::string::npos);
    EXPECT_GT(pos, last) << e.name;
    last = pos;
  }
  EXPECT_EQ(bytes.size(), 8 + header_len + 24 + 12 + 12 + 48 + 4);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp-" + std::to_string(::getpid())));

  const SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(f.entries().size(), entries.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const SafetensorsEntry& e = f.entries()[i];
    EXPECT_EQ(e.name, entries[i].name);
    EXPECT_EQ(e.dtype, entries[i].dtype);
    EXPECT_EQ(e.shape, entries[i].shape);
    EXPECT_EQ(e.begin, offset);
    offset = e.end;
    EXPECT_EQ(f.raw_bytes(e.name), entries[i].bytes);
  }
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("step"), "12");
  for (const char* name : {"z.weight", "a.half", "m.bf", "b.double"}) {
    const std::vector<float> back = values_of(f.load_f32(name));
    ASSERT_EQ(back.size(), values.size()) << name;
    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(f32_bits(back[i]), f32_bits(values[i])) << name << "[" << i << "]";
  }
  EXPECT_EQ(f.load_f32("a.half").shape(), (Shape{3, 2}));
  const Tensor scalar = f.load_f32("scalar");
  EXPECT_EQ(scalar.ndim(), 0);
  EXPECT_EQ(scalar.data<float>()[0], 7.5f);
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_THROW(f.load_f32("missing"), vitscuda::Error);
}

TEST(Safetensors, WriterWithoutMetadataOmitsIt) {
  const std::string path = temp_dir("safetensors_nometa") + "/x.safetensors";
  write_safetensors(path, {{"w", "F32", {1}, encode_f32(Tensor::from_vector(std::vector<float>{1.0f}, Shape{1}), "F32")}}, {});
  const std::vector<uint8_t> bytes = file_bytes(path);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + header_length_of(bytes));
  EXPECT_EQ(header.find("__metadata__"), std::string::npos);
  EXPECT_TRUE(SafetensorsFile::open(path).metadata().empty());
}

// tests/data/io/reference_torch.safetensors was written by the reference writer
// (python safetensors 0.8.0, torch 2.15) with:
//   import torch; from safetensors.torch import save_file
//   f = float("inf")
//   save_file({
//    "f32": torch.tensor([[0.0, -1.5, 3.25], [2**-149, 3.4028234663852886e38, -0.0]], dtype=torch.float32),
//    "f16_exact": torch.tensor([1.0, -2.5, 65504.0, 2**-24, 2**-14 - 2**-24, f, -f, float("nan")]).half(),
//    "f16_rounded": torch.tensor([1 + 2**-11, 1 + 3 * 2**-11, 65520.0, 2**-25, 3 * 2**-25, 0.1]).half(),
//    "bf16_exact": torch.tensor([1.0, -3.0, 2**-133, -f]).bfloat16(),
//    "bf16_rounded": torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, 3.4028234663852886e38, 0.1]).bfloat16(),
//    "i64": torch.tensor([[-1, 2], [3, 2**40]], dtype=torch.int64),
//    "empty": torch.zeros(0, 3),
//   }, "reference_torch.safetensors", metadata={"format": "pt", "origin": "python safetensors"})
TEST(Safetensors, ReadsFileWrittenByReferenceWriter) {
  const SafetensorsFile f = SafetensorsFile::open(data_path("io/reference_torch.safetensors"));
  EXPECT_EQ(f.entries().size(), 7u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("origin"), "python safetensors");
  const float inf = std::numeric_limits<float>::infinity();

  const Tensor f32 = f.load_f32("f32");
  EXPECT_EQ(f32.shape(), (Shape{2, 3}));
  const std::vector<float> f32_expected = {0.0f, -1.5f, 3.25f, std::ldexp(1.0f, -149), 3.4028234663852886e38f, -0.0f};
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(f32_bits(values_of(f32)[i]), f32_bits(f32_expected[i])) << i;

  // Half-precision decoding, including the largest normal, both subnormal extremes, +-inf and NaN.
  const std::vector<float> h = values_of(f.load_f32("f16_exact"));
  const std::vector<float> h_expected = {1.0f, -2.5f, 65504.0f, std::ldexp(1.0f, -24),
                                         std::ldexp(1.0f, -14) - std::ldexp(1.0f, -24), inf, -inf};
  for (size_t i = 0; i < h_expected.size(); ++i) EXPECT_EQ(h[i], h_expected[i]) << i;
  EXPECT_TRUE(std::isnan(h[7]));

  // torch rounded these to nearest even: 1 + 2^-11 is a tie -> 1 (even); 1 + 3*2^-11 -> 1 + 2^-9;
  // 65520 is the tie between 65504 and 2^16 -> inf; 2^-25 -> 0; 3*2^-25 -> 2^-23; 0.1 -> 0.0999755859375.
  const std::vector<float> hr = values_of(f.load_f32("f16_rounded"));
  const std::vector<float> hr_expected = {1.0f, 1.0f + std::ldexp(1.0f, -9), inf, 0.0f, std::ldexp(1.0f, -23),
                                          0.0999755859375f};
  for (size_t i = 0; i < hr_expected.size(); ++i) EXPECT_EQ(hr[i], hr_expected[i]) << i;

  const std::vector<float> b = values_of(f.load_f32("bf16_exact"));
  const std::vector<float> b_expected = {1.0f, -3.0f, std::ldexp(1.0f, -133), -inf};
  for (size_t i = 0; i < b_expected.size(); ++i) EXPECT_EQ(b[i], b_expected[i]) << i;
  // 1 + 2^-8 ties to 1; 1 + 3*2^-8 -> 1 + 2^-6; f32 max rounds past the bf16 max -> inf; 0.1 -> 0.10009765625.
  const std::vector<float> br = values_of(f.load_f32("bf16_rounded"));
  const std::vector<float> br_expected = {1.0f, 1.015625f, inf, 0.10009765625f};
  for (size_t i = 0; i < br_expected.size(); ++i) EXPECT_EQ(br[i], br_expected[i]) << i;

  // Our encoder reproduces torch's rounding bit for bit.
  auto encode = [](std::vector<float> v, const char* dtype) {
    return encode_f32(Tensor::from_vector(v, {static_cast<int64_t>(v.size())}), dtype);
  };
  EXPECT_EQ(encode({1 + 0x1p-11f, 1 + 3 * 0x1p-11f, 65520.0f, 0x1p-25f, 3 * 0x1p-25f, 0.1f}, "F16"),
            f.raw_bytes("f16_rounded"));
  EXPECT_EQ(encode({1.0f, -2.5f, 65504.0f, 0x1p-24f, 0x1p-14f - 0x1p-24f, inf, -inf,
                    std::numeric_limits<float>::quiet_NaN()},
                   "F16"),
            f.raw_bytes("f16_exact"));
  EXPECT_EQ(encode({1 + 0x1p-8f, 1 + 3 * 0x1p-8f, 3.4028234663852886e38f, 0.1f}, "BF16"), f.raw_bytes("bf16_rounded"));
  EXPECT_EQ(encode({1.0f, -3.0f, 0x1p-133f, -inf}, "BF16"), f.raw_bytes("bf16_exact"));

  const SafetensorsEntry* i64 = f.find("i64");
  ASSERT_NE(i64, nullptr);
  EXPECT_EQ(i64->dtype, "I64");
  const std::vector<uint8_t> raw = f.raw_bytes("i64");
  ASSERT_EQ(raw.size(), 32u);
  int64_t ints[4];
  std::memcpy(ints, raw.data(), 32);
  EXPECT_EQ(ints[0], -1);
  EXPECT_EQ(ints[3], int64_t(1) << 40);
  try {
    f.load_f32("i64");
    FAIL() << "I64 converted to f32";
  } catch (const vitscuda::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'i64'"), std::string::npos) << e.what();
  }
  const Tensor empty = f.load_f32("empty");
  EXPECT_EQ(empty.shape(), (Shape{0, 3}));
  EXPECT_EQ(empty.numel(), 0);
}

TEST(Safetensors, F64InputRoundsOnceToHalf) {
  // 1 + 2^-11 + 2^-40 is just above the f16 tie between 1 and 1 + 2^-10. Going
  // through f32 first would round it onto the tie (then to 1); direct rounding gives 1 + 2^-10.
  const Tensor d = Tensor::from_vector(std::vector<double>{1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)}, {1});
  EXPECT_EQ(encode_f32(d, "F16"), (std::vector<uint8_t>{0x01, 0x3C}));
  const Tensor db = Tensor::from_vector(std::vector<double>{1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40)}, {1});
  EXPECT_EQ(encode_f32(db, "BF16"), (std::vector<uint8_t>{0x81, 0x3F}));
  EXPECT_THROW(encode_f32(d, "I32"), vitscuda::Error);
}

TEST(Safetensors, RejectsTruncatedFile) { expect_rejected({1, 0, 0, 0, 0}, {"5 bytes", "truncated"}); }

TEST(Safetensors, RejectsHeaderLengthOverflow) {
  expect_rejected(make_file(~uint64_t(0), "{}", 0), {"header length 18446744073709551615 exceeds file size 10"});
}

TEST(Safetensors, RejectsHeaderLongerThanFile) {
  expect_rejected(make_file(100, "{}", 0), {"header length 100 exceeds file size 10"});
}

TEST(Safetensors, RejectsCorruptJson) {
  expect_rejected(make_file("{\"w\": {\"dtype\": \"F32\",", 0), {"not valid JSON"});
  expect_rejected(make_file("[1, 2]", 0), {"JSON object"});
  expect_rejected(make_file("{\"w\": 3}", 0), {"tensor 'w'", "must be an object"});
}

TEST(Safetensors, RejectsMissingOrMistypedFields) {
  expect_rejected(make_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), {"tensor 'w'", "no 'dtype'"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), {"tensor 'w'", "no 'shape'"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[1]}})", 4), {"tensor 'w'", "no 'data_offsets'"});
  expect_rejected(make_file(R"({"w":{"dtype":5,"shape":[1],"data_offsets":[0,4]}})", 4),
                  {"tensor 'w'", "dtype must be a string"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                  {"tensor 'w'", "shape[0] is negative"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
                  {"tensor 'w'", "shape[0] must be a non-negative integer"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4),
                  {"tensor 'w'", "data_offsets must be [begin, end]"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", 4),
                  {"tensor 'w'", "begin > end"});
  expect_rejected(make_file(R"({"__metadata__":{"step":3}})", 0), {"__metadata__", "'step'", "must be a string"});
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
                  {"'w'", "more than once"});
}

TEST(Safetensors, RejectsUnknownDtype) {
  expect_rejected(make_file(R"({"w":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", 4),
                  {"tensor 'w'", "unknown dtype 'F17'"});
}

TEST(Safetensors, RejectsOffsetsPastEnd) {
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
                  {"tensor 'w'", "past the end"});
}

TEST(Safetensors, RejectsSizeMismatch) {
  expect_rejected(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                  {"tensor 'w'", "size mismatch", "needs 12"});
}

TEST(Safetensors, RejectsOverlappingOffsets) {
  expect_rejected(
      make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
      {"tensor 'b'", "overlaps tensor 'a'"});
}

TEST(Safetensors, RejectsGaps) {
  expect_rejected(
      make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", 20),
      {"gap of 4 unused bytes", "tensor 'b'"});
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 12),
                  {"gap of 4 unused bytes at the end", "tensor 'a'"});
}

TEST(Safetensors, AcceptsPaddedHeaderAndZeroSizedTensors) {
  // Zero-sized tensors may share an offset; trailing spaces pad the header.
  const std::vector<uint8_t> bytes = make_file(
      R"({"e":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"d":{"dtype":"BF16","shape":[2,0],"data_offsets":[0,0]}}   )",
      4);
  const SafetensorsFile f = SafetensorsFile::from_bytes(bytes, "ok.safetensors");
  ASSERT_EQ(f.entries().size(), 3u);
  EXPECT_EQ(f.entries().back().name, "a");  // sorted by offsets
}

TEST(Safetensors, WriterValidatesEntriesAndKeepsExistingFileOnFailure) {
  const std::string dir = temp_dir("safetensors_atomic");
  const std::string path = dir + "/keep.safetensors";
  const std::vector<uint8_t> four = encode_f32(Tensor::from_vector(std::vector<float>{2.0f}, Shape{1}), "F32");
  write_safetensors(path, {{"w", "F32", {1}, four}}, {});
  const std::vector<uint8_t> before = file_bytes(path);

  EXPECT_THROW(write_safetensors(path, {{"w", "F32", {2}, four}}, {}), vitscuda::Error);       // 4 bytes for 8
  EXPECT_THROW(write_safetensors(path, {{"w", "F32", {1}, four}, {"w", "F32", {1}, four}}, {}),
               vitscuda::Error);                                                                // duplicate
  EXPECT_THROW(write_safetensors(path, {{"w", "X9", {1}, four}}, {}), vitscuda::Error);        // dtype
  EXPECT_EQ(file_bytes(path), before);

  const std::string unwritable = dir + "/no_such_dir/out.safetensors";
  try {
    write_safetensors(unwritable, {{"w", "F32", {1}, four}}, {});
    FAIL() << "wrote into a missing directory";
  } catch (const vitscuda::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(unwritable), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::strerror(ENOENT)), std::string::npos) << msg;
  }
  // Only the finished file is left in the directory.
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) files += entry.is_regular_file();
  EXPECT_EQ(files, 1u);
}

}  // namespace
}  // namespace vitscuda::io
