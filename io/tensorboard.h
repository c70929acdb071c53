// TensorBoard event files without TensorFlow or protobuf.
//
// EventWriter writes `events.out.tfevents.<unix time>.<hostname>.vitscuda` in the TFRecord format
// (uint64 length, masked CRC32C of the length, data, masked CRC32C of the data, all little-endian)
// whose records are hand-encoded tensorflow.Event protobufs: the first carries file_version
// "brain.Event:2", the others one Summary.Value each (simple_value scalars, Summary.Audio holding a
// 16-bit PCM WAV file, Summary.Image holding a PNG file).
//
// A resumed run writes a new file in the same directory; TensorBoard discards the older file's
// points at steps at or after the first step it sees again (its out-of-order-step purge).
#pragma once
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "io/png.h"

namespace vitscuda::io {

class EventWriter {
 public:
  // Creates `logdir` if needed and a new event file in it (never overwrites one), starting with the
  // file_version event.
  explicit EventWriter(const std::string& logdir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // Each event is handed to the operating system before the call returns (a crashed process loses
  // nothing already added); flush() also fsyncs.
  void add_scalar(const std::string& tag, double value, int64_t step);
  // Mono samples in [-1, 1] (clipped), stored as 16-bit PCM.
  void add_audio(const std::string& tag, const float* samples, size_t count, int sample_rate, int64_t step);
  void add_audio(const std::string& tag, const std::vector<float>& samples, int sample_rate, int64_t step) {
    add_audio(tag, samples.data(), samples.size(), sample_rate, step);
  }
  // 8-bit grayscale (channels 1) or RGB (channels 3), rows from the top.
  void add_image(const std::string& tag, const uint8_t* pixels, int width, int height, int channels, int64_t step);
  void add_image(const std::string& tag, const RasterImage& image, int64_t step) {
    add_image(tag, image.pixels.data(), image.width, image.height, image.channels, step);
  }
  void flush();

  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event_bytes);
  std::string path_;
  std::FILE* file_ = nullptr;
};

// ------------------------------------------------------------------ encoders (exposed for tests)

// One TFRecord: length, masked CRC32C(length), data, masked CRC32C(data).
std::string encode_tfrecord(const std::string& data);

// Serialized tensorflow.Event messages.
std::string encode_file_version_event(double wall_time);
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value);
std::string encode_audio_event(double wall_time, int64_t step, const std::string& tag, float sample_rate,
                               int64_t num_channels, int64_t length_frames, const std::vector<uint8_t>& wav);
std::string encode_image_event(double wall_time, int64_t step, const std::string& tag, int height, int width,
                               int colorspace, const std::vector<uint8_t>& png);

// RIFF/WAVE, 16-bit PCM mono; samples clipped to [-1, 1] and scaled by 32767 with rounding.
std::vector<uint8_t> encode_wav_pcm16(const float* samples, size_t count, int sample_rate);

// ------------------------------------------------------------------ spectrogram images

enum class Colormap { Grayscale, Viridis };

struct SpectrogramStyle {
  Colormap colormap = Colormap::Viridis;
  // Value range mapped to the ends of the colormap; unset: the finite minimum / maximum of the data
  // (a fixed range makes images from different steps comparable). Non-finite values get the low end.
  std::optional<float> min_value;
  std::optional<float> max_value;
};

// Renders mel[n_mels][frames] (row-major) as an image frames wide and n_mels tall, with mel bin 0
// (the lowest frequencies) in the bottom row. Grayscale gives 1 channel, Viridis 3.
RasterImage render_spectrogram(const float* mel, int n_mels, int frames, const SpectrogramStyle& style = {});
// `mel` is an f32 or f64 CPU tensor [n_mels, frames] or [1, n_mels, frames].
RasterImage render_spectrogram(const Tensor& mel, const SpectrogramStyle& style = {});

}  // namespace vitscuda::io
