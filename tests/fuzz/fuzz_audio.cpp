// io/audio: read_audio (libsndfile, mono mixdown) on the input as a file, then, as prepare does
// for audio it accepts (finite samples, at most 20 s: prepare's default --max-seconds), resample
// (libsoxr) to 16 kHz.
//
// Input: one mode byte, then the file. The low three bits choose the file name's extension:
// libsndfile identifies most formats by content but falls back on the extension for headerless
// ones.
#include <cmath>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "fuzz_support.h"
#include "io/audio.h"

using namespace vitscuda;

namespace {
constexpr const char* kExtensions[8] = {".wav", ".flac", ".ogg", ".mp3", ".au", ".gsm", ".vox", ".raw"};
constexpr double kMaxSeconds = 20;
constexpr int kTargetRate = 16000;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string path = fuzz::scratch_dir() + "/input" + kExtensions[data[0] & 7];
  fuzz::write_file(path, data + 1, size - 1);
  io::Audio audio;
  try {
    audio = io::read_audio(path);
  } catch (const Error&) {
    std::filesystem::remove(path);
    return 0;
  }
  std::filesystem::remove(path);
  FUZZ_CHECK(audio.sample_rate > 0, "sample rate " + std::to_string(audio.sample_rate));
  for (float s : audio.samples)
    if (!std::isfinite(s)) return 0;  // prepare rejects the file as non_finite
  const double seconds = static_cast<double>(audio.samples.size()) / audio.sample_rate;
  if (seconds > kMaxSeconds) return 0;  // prepare rejects it as too_long before resampling
  std::vector<float> resampled;
  try {
    resampled = io::resample(audio.samples, audio.sample_rate, kTargetRate);
  } catch (const Error&) {
    return 0;
  }
  const double expected = seconds * kTargetRate;
  FUZZ_CHECK(static_cast<double>(resampled.size()) <= expected + 1,
             std::to_string(resampled.size()) + " samples from " + std::to_string(audio.samples.size()) + " at " +
                 std::to_string(audio.sample_rate) + " Hz");
  return 0;
}
