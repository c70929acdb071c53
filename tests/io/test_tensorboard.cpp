// CRC32 / CRC32C / Adler-32, the PNG and WAV encoders, spectrogram rendering, and TensorBoard event
// files, re-parsed here record by record (length and data CRC32C) and field by field (protobuf wire
// format) with a decoder written independently of the encoder.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/error.h"
#include "io/crc32.h"
#include "io/png.h"
#include "io/tensorboard.h"
#include "support/test_support.h"

namespace vitscuda::io {
namespace {
namespace fs = std::filesystem;

// ------------------------------------------------------------------ reference checksums (bit by bit)

uint32_t bitwise_crc(const std::vector<uint8_t>& data, uint32_t reflected_polynomial) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t byte : data) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? reflected_polynomial : 0u);
  }
  return ~crc;
}

uint32_t naive_adler32(const std::vector<uint8_t>& data) {
  uint64_t a = 1, b = 0;
  for (uint8_t byte : data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return static_cast<uint32_t>((b << 16) | a);
}

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

TEST(Checksums, PublishedCheckValues) {
  const std::string check = "123456789";
  // The standard CRC catalogue check values for "123456789".
  EXPECT_EQ(crc32(check.data(), check.size()), 0xCBF43926u);
  EXPECT_EQ(crc32c(check.data(), check.size()), 0xE3069283u);
  EXPECT_EQ(crc32(check.data(), 0), 0u);
  // RFC 3720 (iSCSI) appendix B.4 CRC32C examples.
  std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xFF), ascending(32);
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
  // Adler-32 of "Wikipedia" (the example in RFC 1950's Wikipedia article and zlib's docs).
  const std::string wiki = "Wikipedia";
  EXPECT_EQ(adler32(wiki.data(), wiki.size()), 0x11E60398u);
  EXPECT_EQ(adler32(wiki.data(), 0), 1u);
}

TEST(Checksums, TablesAgreeWithBitwiseDefinitionAndIncrementalUse) {
  std::mt19937 gen(7);
  std::vector<uint8_t> data(100000);
  for (auto& b : data) b = static_cast<uint8_t>(gen());
  EXPECT_EQ(crc32(data.data(), data.size()), bitwise_crc(data, 0xEDB88320u));
  EXPECT_EQ(crc32c(data.data(), data.size()), bitwise_crc(data, 0x82F63B78u));
  EXPECT_EQ(adler32(data.data(), data.size()), naive_adler32(data));
  // Worst case for Adler-32's deferred modulo: all bytes 0xFF.
  const std::vector<uint8_t> ff(20000, 0xFF);
  EXPECT_EQ(adler32(ff.data(), ff.size()), naive_adler32(ff));

  const size_t split = 12345;
  EXPECT_EQ(crc32_update(crc32_update(0, data.data(), split), data.data() + split, data.size() - split),
            crc32(data.data(), data.size()));
  EXPECT_EQ(crc32c_update(crc32c_update(0, data.data(), split), data.data() + split, data.size() - split),
            crc32c(data.data(), data.size()));
  EXPECT_EQ(adler32_update(adler32_update(1, data.data(), split), data.data() + split, data.size() - split),
            adler32(data.data(), data.size()));
}

TEST(Checksums, FileChecksumMatchesInMemoryAndNamesAMissingFile) {
  const std::string dir = testing::temp_dir("crc_file");
  std::vector<uint8_t> data(3 << 20);  // spans several read blocks
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 31 + (i >> 11));
  std::ofstream(dir + "/blob", std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
  uint64_t size = 0;
  EXPECT_EQ(crc32_file(dir + "/blob", &size), crc32(data.data(), data.size()));
  EXPECT_EQ(size, data.size());
  try {
    crc32_file(dir + "/absent");
    FAIL() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/absent"), std::string::npos) << e.what();
  }
}

TEST(Checksums, MaskedCrc32cFollowsTheTfRecordDefinition) {
  const std::string data = "brain.Event:2";
  const uint32_t crc = crc32c(data.data(), data.size());
  const uint32_t masked = masked_crc32c(data.data(), data.size());
  // Unmasking (TensorFlow's crc32c::Unmask) must give the plain CRC back.
  const uint32_t rot = masked - 0xa282ead8u;
  EXPECT_EQ((rot >> 17) | (rot << 15), crc);
  EXPECT_NE(masked, crc);
}

// ------------------------------------------------------------------ PNG decoding (stored blocks)

uint32_t be32(const uint8_t* p) { return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]; }

// Decodes the subset of PNG our encoder writes, checking every chunk CRC and the zlib trailer.
RasterImage decode_stored_png(const std::vector<uint8_t>& png) {
  const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  EXPECT_TRUE(png.size() > 8 && std::memcmp(png.data(), signature, 8) == 0);
  RasterImage image;
  std::vector<uint8_t> idat;
  bool ended = false;
  size_t at = 8;
  while (at + 12 <= png.size() && !ended) {
    const uint32_t length = be32(&png[at]);
    EXPECT_LE(at + 12 + length, png.size());
    const std::string type(reinterpret_cast<const char*>(&png[at + 4]), 4);
    EXPECT_EQ(be32(&png[at + 8 + length]), crc32(&png[at + 4], 4 + length)) << "chunk " << type;
    const uint8_t* data = &png[at + 8];
    if (type == "IHDR") {
      EXPECT_EQ(length, 13u);
      image.width = static_cast<int>(be32(data));
      image.height = static_cast<int>(be32(data + 4));
      EXPECT_EQ(data[8], 8);  // bit depth
      image.channels = data[9] == 0 ? 1 : data[9] == 2 ? 3 : -1;
      EXPECT_EQ(data[10], 0);
      EXPECT_EQ(data[11], 0);
      EXPECT_EQ(data[12], 0);
    } else if (type == "IDAT") {
      idat.insert(idat.end(), data, data + length);
    } else if (type == "IEND") {
      ended = true;
    }
    at += 12 + length;
  }
  EXPECT_TRUE(ended);
  EXPECT_EQ(at, png.size());
  // zlib: header, stored deflate blocks, Adler-32 of the inflated bytes.
  EXPECT_GE(idat.size(), 6u);
  EXPECT_EQ((idat[0] * 256 + idat[1]) % 31, 0);
  EXPECT_EQ(idat[0] & 0x0F, 8);  // deflate
  std::vector<uint8_t> raw;
  size_t p = 2;
  bool final_block = false;
  while (!final_block && p + 5 <= idat.size()) {
    final_block = idat[p] & 1;
    EXPECT_EQ((idat[p] >> 1) & 3, 0) << "only stored blocks are expected";
    const uint16_t len = static_cast<uint16_t>(idat[p + 1] | (idat[p + 2] << 8));
    const uint16_t nlen = static_cast<uint16_t>(idat[p + 3] | (idat[p + 4] << 8));
    EXPECT_EQ(static_cast<uint16_t>(~len), nlen);
    raw.insert(raw.end(), idat.begin() + static_cast<std::ptrdiff_t>(p + 5), idat.begin() + static_cast<std::ptrdiff_t>(p + 5 + len));
    p += 5 + len;
  }
  EXPECT_TRUE(final_block);
  EXPECT_EQ(p + 4, idat.size());
  EXPECT_EQ(be32(&idat[p]), naive_adler32(raw));
  const size_t row = static_cast<size_t>(image.width) * image.channels;
  EXPECT_EQ(raw.size(), (row + 1) * image.height);
  for (int y = 0; y < image.height; ++y) {
    EXPECT_EQ(raw[y * (row + 1)], 0) << "filter type of row " << y;
    image.pixels.insert(image.pixels.end(), raw.begin() + static_cast<std::ptrdiff_t>(y * (row + 1) + 1),
                        raw.begin() + static_cast<std::ptrdiff_t>((y + 1) * (row + 1)));
  }
  return image;
}

RasterImage pattern_image(int width, int height, int channels) {
  RasterImage image{width, height, channels, std::vector<uint8_t>(static_cast<size_t>(width) * height * channels)};
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>((i * 37) ^ (i >> 8));
  return image;
}

TEST(Png, GrayAndRgbImagesDecodeToTheSamePixels) {
  for (const RasterImage& image : {pattern_image(5, 3, 1), pattern_image(7, 4, 3),
                                   pattern_image(300, 100, 3) /* 90 KB: two stored blocks */}) {
    const RasterImage decoded = decode_stored_png(encode_png(image));
    EXPECT_EQ(decoded.width, image.width);
    EXPECT_EQ(decoded.height, image.height);
    EXPECT_EQ(decoded.channels, image.channels);
    EXPECT_EQ(decoded.pixels, image.pixels);
  }
  // write_png stores exactly the encoded bytes (the file is kept for checking with other readers).
  const std::string path = testing::temp_dir("png_files") + "/pattern_300x100_rgb.png";
  write_png(path, pattern_image(300, 100, 3));
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(file, encode_png(pattern_image(300, 100, 3)));
  EXPECT_THROW(write_png(path + ".missing-dir/x.png", pattern_image(2, 2, 1)), Error);

  EXPECT_THROW(encode_png(pattern_image(2, 2, 4)), Error);
  RasterImage wrong_size = pattern_image(4, 4, 1);
  wrong_size.pixels.pop_back();
  EXPECT_THROW(encode_png(wrong_size), Error);
}

// ------------------------------------------------------------------ WAV

uint32_t le32(const uint8_t* p) { return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24); }
int16_t le16s(const uint8_t* p) { return static_cast<int16_t>(p[0] | (p[1] << 8)); }

TEST(Wav, Pcm16HeaderAndSamples) {
  const std::vector<float> samples = {0.0f, 0.5f, -0.5f, 1.0f, -1.0f, 2.0f, -3.0f, NAN, 1e-5f};
  const std::vector<uint8_t> wav = encode_wav_pcm16(samples.data(), samples.size(), 22050);
  ASSERT_EQ(wav.size(), 44 + 2 * samples.size());
  EXPECT_EQ(std::string(wav.begin(), wav.begin() + 4), "RIFF");
  EXPECT_EQ(le32(&wav[4]), wav.size() - 8);
  EXPECT_EQ(std::string(wav.begin() + 8, wav.begin() + 16), "WAVEfmt ");
  EXPECT_EQ(le32(&wav[16]), 16u);
  EXPECT_EQ(le16s(&wav[20]), 1);      // PCM
  EXPECT_EQ(le16s(&wav[22]), 1);      // mono
  EXPECT_EQ(le32(&wav[24]), 22050u);  // sample rate
  EXPECT_EQ(le32(&wav[28]), 44100u);  // byte rate
  EXPECT_EQ(le16s(&wav[32]), 2);      // block align
  EXPECT_EQ(le16s(&wav[34]), 16);     // bits
  EXPECT_EQ(std::string(wav.begin() + 36, wav.begin() + 40), "data");
  EXPECT_EQ(le32(&wav[40]), 2 * samples.size());
  // x * 32767 rounded half away from zero; out of range clipped; NaN silenced.
  const std::vector<int16_t> expected = {0, 16384, -16384, 32767, -32767, 32767, -32767, 0, 0};
  for (size_t i = 0; i < samples.size(); ++i) EXPECT_EQ(le16s(&wav[44 + 2 * i]), expected[i]) << "sample " << i;
}

// ------------------------------------------------------------------ spectrogram images

TEST(Spectrogram, LowFrequenciesAtTheBottomAndColormapEnds) {
  const int n_mels = 4, frames = 3;
  std::vector<float> mel(n_mels * frames);
  for (int m = 0; m < n_mels; ++m)
    for (int t = 0; t < frames; ++t) mel[m * frames + t] = -5.0f + 2.0f * m;  // rises with the mel bin

  const RasterImage gray = render_spectrogram(mel.data(), n_mels, frames, {Colormap::Grayscale, {}, {}});
  EXPECT_EQ(gray.width, frames);
  EXPECT_EQ(gray.height, n_mels);
  EXPECT_EQ(gray.channels, 1);
  for (int t = 0; t < frames; ++t) {
    EXPECT_EQ(gray.pixels[(n_mels - 1) * frames + t], 0);  // bin 0 (minimum) in the bottom row
    EXPECT_EQ(gray.pixels[t], 255);                        // top bin (maximum) in the top row
    EXPECT_EQ(gray.pixels[2 * frames + t], 85);            // bin 1: 1/3 of the range -> 255/3
  }

  const RasterImage color = render_spectrogram(mel.data(), n_mels, frames);
  EXPECT_EQ(color.channels, 3);
  const uint8_t* bottom = &color.pixels[(n_mels - 1) * frames * 3];
  const uint8_t* top = &color.pixels[0];
  // matplotlib's viridis at 0 is (68, 1, 84) and at 1 is (253, 231, 37).
  EXPECT_EQ(std::vector<uint8_t>(bottom, bottom + 3), (std::vector<uint8_t>{68, 1, 84}));
  EXPECT_EQ(std::vector<uint8_t>(top, top + 3), (std::vector<uint8_t>{253, 231, 37}));

  // A fixed range clips; non-finite values take the low end.
  mel[0] = NAN;
  // Bins hold -5, -3, -1, 1; the range [-2, 0] puts bin 2 in the middle and clips the others.
  const RasterImage fixed = render_spectrogram(mel.data(), n_mels, frames, {Colormap::Grayscale, -2.0f, 0.0f});
  EXPECT_EQ(fixed.pixels[3 * frames + 0], 0);    // bin 0, NaN
  EXPECT_EQ(fixed.pixels[3 * frames + 1], 0);    // bin 0, -5: below the range
  EXPECT_EQ(fixed.pixels[1 * frames + 1], 128);  // bin 2, -1: half way, 127.5 rounded
  EXPECT_EQ(fixed.pixels[0 * frames + 1], 255);  // bin 3, 1: above the range
}

TEST(Spectrogram, TensorInputAcceptsBatchOfOne) {
  Tensor mel = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {1, 2, 3});
  const RasterImage image = render_spectrogram(mel, {Colormap::Grayscale, {}, {}});
  EXPECT_EQ(image.width, 3);
  EXPECT_EQ(image.height, 2);
  // Bin 1 (values 3, 4, 5) is the top row.
  EXPECT_EQ(image.pixels[0], 153);  // 3/5 * 255
  EXPECT_EQ(image.pixels[5], 102);  // bin 0 value 2: 2/5 * 255
  EXPECT_THROW(render_spectrogram(Tensor::zeros({2, 2, 2}), {}), Error);
}

// ------------------------------------------------------------------ event files

struct ProtoField {
  uint32_t number = 0;
  int wire = 0;
  uint64_t varint = 0;  // wire 0, and the raw bits of wire 1 / 5
  std::string bytes;    // wire 2
};

uint64_t read_varint(const std::string& s, size_t& at) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (at >= s.size()) throw std::runtime_error("truncated varint");
    const uint8_t b = static_cast<uint8_t>(s[at++]);
    value |= uint64_t{b & 0x7Fu} << shift;
    if (!(b & 0x80)) return value;
  }
  throw std::runtime_error("varint too long");
}

std::vector<ProtoField> parse_proto(const std::string& s) {
  std::vector<ProtoField> fields;
  size_t at = 0;
  while (at < s.size()) {
    ProtoField f;
    const uint64_t key = read_varint(s, at);
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<int>(key & 7);
    if (f.wire == 0) {
      f.varint = read_varint(s, at);
    } else if (f.wire == 1 || f.wire == 5) {
      const size_t n = f.wire == 1 ? 8 : 4;
      if (at + n > s.size()) throw std::runtime_error("truncated fixed field");
      std::memcpy(&f.varint, s.data() + at, n);
      at += n;
    } else if (f.wire == 2) {
      const uint64_t n = read_varint(s, at);
      if (at + n > s.size()) throw std::runtime_error("truncated bytes field");
      f.bytes = s.substr(at, n);
      at += n;
    } else {
      throw std::runtime_error("unexpected wire type " + std::to_string(f.wire));
    }
    fields.push_back(std::move(f));
  }
  return fields;
}

const ProtoField& only_field(const std::vector<ProtoField>& fields, uint32_t number, int wire) {
  const ProtoField* found = nullptr;
  for (const auto& f : fields) {
    if (f.number == number) {
      if (found) throw std::runtime_error("field " + std::to_string(number) + " repeated");
      found = &f;
    }
  }
  if (!found) throw std::runtime_error("field " + std::to_string(number) + " missing");
  if (found->wire != wire) throw std::runtime_error("field " + std::to_string(number) + " has wire type " + std::to_string(found->wire));
  return *found;
}

double as_double(const ProtoField& f) {
  double d;
  std::memcpy(&d, &f.varint, 8);
  return d;
}
float as_float(const ProtoField& f) {
  float x;
  const uint32_t bits = static_cast<uint32_t>(f.varint);
  std::memcpy(&x, &bits, 4);
  return x;
}

// Splits a TFRecord file, checking both masked CRC32C values of every record.
std::vector<std::string> read_tfrecords(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> records;
  size_t at = 0;
  while (at < file.size()) {
    EXPECT_LE(at + 12, file.size()) << "truncated record header";
    uint64_t length;
    uint32_t length_crc, data_crc;
    std::memcpy(&length, file.data() + at, 8);
    std::memcpy(&length_crc, file.data() + at + 8, 4);
    EXPECT_EQ(length_crc, masked_crc32c(file.data() + at, 8)) << "record " << records.size();
    EXPECT_LE(at + 12 + length + 4, file.size()) << "truncated record " << records.size();
    const std::string data = file.substr(at + 12, length);
    std::memcpy(&data_crc, file.data() + at + 12 + length, 4);
    EXPECT_EQ(data_crc, masked_crc32c(data.data(), data.size())) << "record " << records.size();
    records.push_back(data);
    at += 12 + length + 4;
  }
  return records;
}

// The single Summary.Value of an Event, and the event's step.
std::vector<ProtoField> summary_value(const std::string& event, int64_t& step, double& wall_time) {
  const auto fields = parse_proto(event);
  wall_time = as_double(only_field(fields, 1, 1));
  step = static_cast<int64_t>(only_field(fields, 2, 0).varint);
  const auto summary = parse_proto(only_field(fields, 5, 2).bytes);
  return parse_proto(only_field(summary, 1, 2).bytes);
}

TEST(TensorBoard, EventFileRecordsDecodeToWhatWasWritten) {
  const std::string logdir = testing::temp_dir("tensorboard_events");
  const double start = static_cast<double>(std::time(nullptr));

  const int sample_rate = 16000;
  std::vector<float> tone(1600);
  for (size_t i = 0; i < tone.size(); ++i) tone[i] = 0.5f * std::sin(2.0 * M_PI * 440.0 * i / sample_rate);
  std::vector<float> mel(20 * 30);
  for (int m = 0; m < 20; ++m)
    for (int t = 0; t < 30; ++t) mel[m * 30 + t] = std::log(1e-3f + std::exp(-0.1f * (m - t % 20) * (m - t % 20)));
  const RasterImage spectrogram = render_spectrogram(mel.data(), 20, 30);
  const RasterImage gray = pattern_image(6, 5, 1);

  std::string path;
  {
    EventWriter writer(logdir);
    path = writer.path();
    writer.add_scalar("train/loss", 1.25, 10);
    writer.add_scalar("train/learning_rate", 2e-4, 11);
    writer.add_audio("audio/tone", tone, sample_rate, 20);
    writer.add_image("mel/sample", spectrogram, 20);
    writer.add_image("debug/gray", gray, 21);
    writer.flush();
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string name = fs::path(path).filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_NE(name.find(std::string(".") + host + ".vitscuda"), std::string::npos) << name;

  const std::vector<std::string> records = read_tfrecords(path);
  ASSERT_EQ(records.size(), 6u);

  // First event: wall time and file version only.
  {
    const auto fields = parse_proto(records[0]);
    EXPECT_NEAR(as_double(only_field(fields, 1, 1)), start, 60.0);
    EXPECT_EQ(only_field(fields, 3, 2).bytes, "brain.Event:2");
  }
  int64_t step = 0;
  double wall_time = 0;
  // Scalars: tag (field 1) and simple_value (field 2, float). The raw bytes are present too.
  {
    const auto value = summary_value(records[1], step, wall_time);
    EXPECT_EQ(step, 10);
    EXPECT_NEAR(wall_time, start, 60.0);
    EXPECT_EQ(only_field(value, 1, 2).bytes, "train/loss");
    EXPECT_EQ(as_float(only_field(value, 2, 5)), 1.25f);
    const float v = 1.25f;
    EXPECT_NE(records[1].find(std::string(reinterpret_cast<const char*>(&v), 4)), std::string::npos);
    EXPECT_NE(records[1].find("train/loss"), std::string::npos);
  }
  {
    const auto value = summary_value(records[2], step, wall_time);
    EXPECT_EQ(step, 11);
    EXPECT_EQ(only_field(value, 1, 2).bytes, "train/learning_rate");
    EXPECT_EQ(as_float(only_field(value, 2, 5)), 2e-4f);
  }
  // Audio: Summary.Value field 6.
  {
    const auto value = summary_value(records[3], step, wall_time);
    EXPECT_EQ(step, 20);
    EXPECT_EQ(only_field(value, 1, 2).bytes, "audio/tone");
    const auto audio = parse_proto(only_field(value, 6, 2).bytes);
    EXPECT_EQ(as_float(only_field(audio, 1, 5)), 16000.0f);
    EXPECT_EQ(only_field(audio, 2, 0).varint, 1u);
    EXPECT_EQ(only_field(audio, 3, 0).varint, tone.size());
    EXPECT_EQ(only_field(audio, 5, 2).bytes, "audio/wav");
    const std::string& wav_text = only_field(audio, 4, 2).bytes;
    const std::vector<uint8_t> wav(wav_text.begin(), wav_text.end());
    ASSERT_EQ(wav.size(), 44 + 2 * tone.size());
    EXPECT_EQ(le32(&wav[24]), 16000u);
    for (size_t i = 0; i < tone.size(); i += 97)
      EXPECT_EQ(le16s(&wav[44 + 2 * i]), static_cast<int16_t>(std::lround(tone[i] * 32767.0f))) << "sample " << i;
  }
  // Images: Summary.Value field 4, PNG payload decoding to the rendered pixels.
  const std::vector<std::pair<const RasterImage*, std::string>> images = {{&spectrogram, "mel/sample"}, {&gray, "debug/gray"}};
  for (size_t k = 0; k < images.size(); ++k) {
    const RasterImage& expected = *images[k].first;
    const auto value = summary_value(records[4 + k], step, wall_time);
    EXPECT_EQ(step, 20 + static_cast<int64_t>(k));
    EXPECT_EQ(only_field(value, 1, 2).bytes, images[k].second);
    const auto image = parse_proto(only_field(value, 4, 2).bytes);
    EXPECT_EQ(only_field(image, 1, 0).varint, static_cast<uint64_t>(expected.height));
    EXPECT_EQ(only_field(image, 2, 0).varint, static_cast<uint64_t>(expected.width));
    EXPECT_EQ(only_field(image, 3, 0).varint, static_cast<uint64_t>(expected.channels));
    const std::string& png = only_field(image, 4, 2).bytes;
    const RasterImage decoded = decode_stored_png(std::vector<uint8_t>(png.begin(), png.end()));
    EXPECT_EQ(decoded.pixels, expected.pixels);
  }
}

TEST(TensorBoard, WritersStartedTogetherGetSeparateFiles) {
  const std::string logdir = testing::temp_dir("tensorboard_two_writers");
  EventWriter first(logdir);
  EventWriter second(logdir);
  EXPECT_NE(first.path(), second.path());
  first.add_scalar("a", 1, 1);
  second.add_scalar("b", 2, 1);
  EXPECT_EQ(read_tfrecords(first.path()).size(), 2u);
  EXPECT_EQ(read_tfrecords(second.path()).size(), 2u);
}

TEST(TensorBoard, RecordFramingForAnEmptyAndALongPayload) {
  const std::string empty = encode_tfrecord("");
  ASSERT_EQ(empty.size(), 16u);
  uint64_t length;
  std::memcpy(&length, empty.data(), 8);
  EXPECT_EQ(length, 0u);
  const std::string payload(200000, 'x');  // length needs more than one byte of the uint64
  const std::string record = encode_tfrecord(payload);
  std::memcpy(&length, record.data(), 8);
  EXPECT_EQ(length, payload.size());
  EXPECT_EQ(record.substr(12, payload.size()), payload);
}

}  // namespace
}  // namespace vitscuda::io
