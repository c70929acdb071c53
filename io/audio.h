// Audio files through libsndfile (wav, flac, ogg, mp3 where libsndfile supports it),
// mono mixdown and resampling with libsoxr.
#pragma once
#include <string>
#include <vector>

namespace vitscuda::io {

enum class WavFormat { Pcm16, Float32 };

struct Audio {
  std::vector<float> samples;  // mono, [-1, 1]
  int sample_rate = 0;
};

// Reads any libsndfile-readable file, mixing channels down to mono. Errors name the file.
Audio read_audio(const std::string& path);
// Resamples with libsoxr (very high quality); returns the input when the rates match.
std::vector<float> resample(const std::vector<float>& samples, int from_rate, int to_rate);
// Reads, mixes down and resamples to `target_rate`.
Audio load_audio(const std::string& path, int target_rate);
// Writes a mono WAV atomically. Pcm16 clips to [-1, 1].
void write_wav(const std::string& path, const std::vector<float>& samples, int sample_rate,
               WavFormat format = WavFormat::Pcm16);

}  // namespace vitscuda::io
