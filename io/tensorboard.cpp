#include "io/tensorboard.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>

#include "common/error.h"
#include "io/crc32.h"

namespace vitscuda::io {
namespace {

// ------------------------------------------------------------------ protobuf wire format

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, (static_cast<uint64_t>(field) << 3) | type); }

// int32 and int64 fields: negative values are sign-extended to 64 bits (10 bytes), as protobuf does.
void put_int_field(std::string& out, uint32_t field, int64_t value) {
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(value));
}

template <typename T>
void put_little_endian(std::string& out, T value) {
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // the host is little-endian (x86-64, aarch64)
  out.append(reinterpret_cast<const char*>(bytes), sizeof(T));
}

void put_double_field(std::string& out, uint32_t field, double value) {
  put_key(out, field, kFixed64);
  put_little_endian(out, value);
}

void put_float_field(std::string& out, uint32_t field, float value) {
  put_key(out, field, kFixed32);
  put_little_endian(out, value);
}

void put_bytes_field(std::string& out, uint32_t field, const void* data, size_t size) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, size);
  out.append(static_cast<const char*>(data), size);
}

void put_bytes_field(std::string& out, uint32_t field, const std::string& data) {
  put_bytes_field(out, field, data.data(), data.size());
}

// tensorflow.Event field numbers.
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
// tensorflow.Summary: repeated Value value = 1; Value: tag 1, simple_value 2, image 4, audio 6.
constexpr uint32_t kSummaryValue = 1;
constexpr uint32_t kValueTag = 1, kValueSimpleValue = 2, kValueImage = 4, kValueAudio = 6;
// Summary.Image and Summary.Audio.
constexpr uint32_t kImageHeight = 1, kImageWidth = 2, kImageColorspace = 3, kImageEncoded = 4;
constexpr uint32_t kAudioSampleRate = 1, kAudioNumChannels = 2, kAudioLengthFrames = 3, kAudioEncoded = 4,
                   kAudioContentType = 5;

std::string event_with_value(double wall_time, int64_t step, const std::string& value) {
  std::string summary;
  put_bytes_field(summary, kSummaryValue, value);
  std::string event;
  put_double_field(event, kEventWallTime, wall_time);
  put_int_field(event, kEventStep, step);
  put_bytes_field(event, kEventSummary, summary);
  return event;
}

double now_seconds() {
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
}

void put_u16_le(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
void put_u32_le(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_tag(std::vector<uint8_t>& out, const char tag[4]) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(tag[i]));
}

// Viridis sampled at 9 evenly spaced points (matplotlib's table); linear in between.
constexpr uint8_t kViridis[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
                                    {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};

void viridis(double t, uint8_t rgb[3]) {
  const double x = std::clamp(t, 0.0, 1.0) * 8.0;
  const int i = std::min(static_cast<int>(x), 7);
  const double f = x - i;
  for (int c = 0; c < 3; ++c) rgb[c] = static_cast<uint8_t>(std::lround(kViridis[i][c] + f * (kViridis[i + 1][c] - kViridis[i][c])));
}

}  // namespace

// ------------------------------------------------------------------ encoders

std::string encode_tfrecord(const std::string& data) {
  std::string record;
  record.reserve(data.size() + 16);
  const uint64_t length = data.size();
  put_little_endian(record, length);
  put_little_endian(record, masked_crc32c(record.data(), 8));
  record += data;
  put_little_endian(record, masked_crc32c(data.data(), data.size()));
  return record;
}

std::string encode_file_version_event(double wall_time) {
  std::string event;
  put_double_field(event, kEventWallTime, wall_time);
  put_int_field(event, kEventStep, 0);
  put_bytes_field(event, kEventFileVersion, std::string("brain.Event:2"));
  return event;
}

std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string v;
  put_bytes_field(v, kValueTag, tag);
  put_float_field(v, kValueSimpleValue, value);
  return event_with_value(wall_time, step, v);
}

std::string encode_audio_event(double wall_time, int64_t step, const std::string& tag, float sample_rate,
                               int64_t num_channels, int64_t length_frames, const std::vector<uint8_t>& wav) {
  std::string audio;
  put_float_field(audio, kAudioSampleRate, sample_rate);
  put_int_field(audio, kAudioNumChannels, num_channels);
  put_int_field(audio, kAudioLengthFrames, length_frames);
  put_bytes_field(audio, kAudioEncoded, wav.data(), wav.size());
  put_bytes_field(audio, kAudioContentType, std::string("audio/wav"));
  std::string v;
  put_bytes_field(v, kValueTag, tag);
  put_bytes_field(v, kValueAudio, audio);
  return event_with_value(wall_time, step, v);
}

std::string encode_image_event(double wall_time, int64_t step, const std::string& tag, int height, int width,
                               int colorspace, const std::vector<uint8_t>& png) {
  std::string image;
  put_int_field(image, kImageHeight, height);
  put_int_field(image, kImageWidth, width);
  put_int_field(image, kImageColorspace, colorspace);
  put_bytes_field(image, kImageEncoded, png.data(), png.size());
  std::string v;
  put_bytes_field(v, kValueTag, tag);
  put_bytes_field(v, kValueImage, image);
  return event_with_value(wall_time, step, v);
}

std::vector<uint8_t> encode_wav_pcm16(const float* samples, size_t count, int sample_rate) {
  VC_CHECK(sample_rate > 0, "WAV: sample rate must be positive, got " << sample_rate);
  constexpr uint16_t kChannels = 1, kBitsPerSample = 16;
  constexpr uint32_t kBlockAlign = kChannels * kBitsPerSample / 8;
  VC_CHECK(count <= (std::numeric_limits<uint32_t>::max() - 36) / kBlockAlign, "WAV: " << count << " samples do not fit a RIFF file");
  const uint32_t data_bytes = static_cast<uint32_t>(count * kBlockAlign);
  std::vector<uint8_t> wav;
  wav.reserve(44 + data_bytes);
  put_tag(wav, "RIFF");
  put_u32_le(wav, 36 + data_bytes);
  put_tag(wav, "WAVE");
  put_tag(wav, "fmt ");
  put_u32_le(wav, 16);  // PCM fmt chunk size
  put_u16_le(wav, 1);   // format: PCM
  put_u16_le(wav, kChannels);
  put_u32_le(wav, static_cast<uint32_t>(sample_rate));
  put_u32_le(wav, static_cast<uint32_t>(sample_rate) * kBlockAlign);  // byte rate
  put_u16_le(wav, kBlockAlign);
  put_u16_le(wav, kBitsPerSample);
  put_tag(wav, "data");
  put_u32_le(wav, data_bytes);
  for (size_t i = 0; i < count; ++i) {
    const float x = std::isfinite(samples[i]) ? std::clamp(samples[i], -1.0f, 1.0f) : 0.0f;
    const auto pcm = static_cast<int16_t>(std::lround(x * 32767.0f));
    put_u16_le(wav, static_cast<uint16_t>(pcm));
  }
  return wav;
}

// ------------------------------------------------------------------ EventWriter

EventWriter::EventWriter(const std::string& logdir) {
  std::error_code ec;
  std::filesystem::create_directories(logdir, ec);
  VC_CHECK(!ec, "cannot create TensorBoard log directory '" << logdir << "': " << ec.message());
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  const std::string base = (std::filesystem::path(logdir) / ("events.out.tfevents." + std::to_string(std::time(nullptr)) + "." +
                                                             host + ".vitscuda")).string();
  // Two writers started within the same second get distinct names rather than sharing a file.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    path_ = attempt == 0 ? base : base + "." + std::to_string(attempt);
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) continue;
    VC_CHECK(fd >= 0, "cannot create TensorBoard event file '" << path_ << "': " << std::strerror(errno));
    file_ = ::fdopen(fd, "wb");
    VC_CHECK(file_, "cannot open TensorBoard event file '" << path_ << "': " << std::strerror(errno));
    break;
  }
  VC_CHECK(file_, "cannot create a new TensorBoard event file next to '" << base << "': 1000 names are taken");
  write_event(encode_file_version_event(now_seconds()));
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);
}

void EventWriter::write_event(const std::string& event_bytes) {
  const std::string record = encode_tfrecord(event_bytes);
  const size_t written = std::fwrite(record.data(), 1, record.size(), file_);
  VC_CHECK(written == record.size() && std::fflush(file_) == 0,
           "cannot write to TensorBoard event file '" << path_ << "': " << std::strerror(errno));
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  write_event(encode_scalar_event(now_seconds(), step, tag, static_cast<float>(value)));
}

void EventWriter::add_audio(const std::string& tag, const float* samples, size_t count, int sample_rate, int64_t step) {
  const std::vector<uint8_t> wav = encode_wav_pcm16(samples, count, sample_rate);
  write_event(encode_audio_event(now_seconds(), step, tag, static_cast<float>(sample_rate), 1,
                                 static_cast<int64_t>(count), wav));
}

void EventWriter::add_image(const std::string& tag, const uint8_t* pixels, int width, int height, int channels,
                            int64_t step) {
  const std::vector<uint8_t> png = encode_png(pixels, width, height, channels);
  write_event(encode_image_event(now_seconds(), step, tag, height, width, channels, png));
}

void EventWriter::flush() {
  VC_CHECK(std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0,
           "cannot flush TensorBoard event file '" << path_ << "': " << std::strerror(errno));
}

// ------------------------------------------------------------------ spectrogram images

RasterImage render_spectrogram(const float* mel, int n_mels, int frames, const SpectrogramStyle& style) {
  VC_CHECK(n_mels > 0 && frames > 0, "render_spectrogram: size must be positive, got " << n_mels << " mels x " << frames << " frames");
  const size_t count = static_cast<size_t>(n_mels) * frames;
  float lo = std::numeric_limits<float>::infinity(), hi = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < count; ++i) {
    if (std::isfinite(mel[i])) {
      lo = std::min(lo, mel[i]);
      hi = std::max(hi, mel[i]);
    }
  }
  if (style.min_value) lo = *style.min_value;
  if (style.max_value) hi = *style.max_value;
  if (!(lo <= hi)) lo = hi = 0;  // no finite values at all
  const double span = hi > lo ? static_cast<double>(hi) - lo : 1.0;

  RasterImage image;
  image.width = frames;
  image.height = n_mels;
  image.channels = style.colormap == Colormap::Grayscale ? 1 : 3;
  image.pixels.resize(count * image.channels);
  for (int m = 0; m < n_mels; ++m) {
    const int row = n_mels - 1 - m;  // low frequencies at the bottom
    for (int t = 0; t < frames; ++t) {
      const float v = mel[static_cast<size_t>(m) * frames + t];
      const double level = std::isfinite(v) ? std::clamp((v - lo) / span, 0.0, 1.0) : 0.0;
      uint8_t* px = &image.pixels[(static_cast<size_t>(row) * frames + t) * image.channels];
      if (image.channels == 1) {
        px[0] = static_cast<uint8_t>(std::lround(level * 255.0));
      } else {
        viridis(level, px);
      }
    }
  }
  return image;
}

RasterImage render_spectrogram(const Tensor& mel, const SpectrogramStyle& style) {
  VC_CHECK(mel.defined() && mel.device() == Device::CPU, "render_spectrogram: needs a CPU tensor, got "
                                                             << (mel.defined() ? mel.describe() : "undefined"));
  VC_CHECK(mel.ndim() == 2 || (mel.ndim() == 3 && mel.dim(0) == 1),
           "render_spectrogram: expected [n_mels, frames] or [1, n_mels, frames], got " << mel.describe());
  const std::vector<float> values = mel.to_float_vector();
  return render_spectrogram(values.data(), static_cast<int>(mel.dim(-2)), static_cast<int>(mel.dim(-1)), style);
}

}  // namespace vitscuda::io
