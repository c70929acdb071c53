#include "io/audio.h"

#include <sndfile.h>
#include <soxr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common/error.h"

namespace vitscuda::io {

Audio read_audio(const std::string& path) {
  SF_INFO info{};
  SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
  VC_CHECK(f, "cannot read audio " << path << ": " << sf_strerror(nullptr));
  Audio audio;
  audio.sample_rate = info.samplerate;
  const int channels = info.channels;
  std::vector<float> frame_buffer(static_cast<size_t>(4096) * channels);
  // info.frames comes from the file's header and is only a hint: a damaged FLAC STREAMINFO can
  // claim 2^36 samples. Reserve at most about four minutes at 16 kHz; longer audio grows as read.
  constexpr sf_count_t kMaxReservedFrames = sf_count_t(1) << 22;
  audio.samples.reserve(static_cast<size_t>(std::clamp<sf_count_t>(info.frames, 0, kMaxReservedFrames)));
  for (;;) {
    sf_count_t n = sf_readf_float(f, frame_buffer.data(), 4096);
    if (n <= 0) break;
    for (sf_count_t i = 0; i < n; ++i) {
      float s = 0;
      for (int c = 0; c < channels; ++c) s += frame_buffer[static_cast<size_t>(i) * channels + c];
      audio.samples.push_back(s / static_cast<float>(channels));
    }
  }
  const int err = sf_error(f);
  const std::string message = sf_strerror(f);
  sf_close(f);
  VC_CHECK(err == SF_ERR_NO_ERROR, "error decoding audio " << path << ": " << message);
  VC_CHECK(audio.sample_rate > 0, "audio " << path << " reports sample rate " << audio.sample_rate);
  return audio;
}

std::vector<float> resample(const std::vector<float>& samples, int from_rate, int to_rate) {
  VC_CHECK(from_rate > 0 && to_rate > 0, "resample: invalid rates " << from_rate << " -> " << to_rate);
  if (from_rate == to_rate || samples.empty()) return samples;
  const size_t out_len = static_cast<size_t>(static_cast<double>(samples.size()) * to_rate / from_rate + 0.5);
  // Too few samples for one at the new rate (e.g. 1 sample at 44.1 kHz -> 16 kHz): nothing to
  // resample, and soxr_oneshot dereferences the null buffer of an empty output.
  if (out_len == 0) return {};
  std::vector<float> out(out_len);
  size_t done = 0;
  soxr_quality_spec_t q = soxr_quality_spec(SOXR_VHQ, 0);
  soxr_error_t err = soxr_oneshot(from_rate, to_rate, 1, samples.data(), samples.size(), nullptr, out.data(), out_len,
                                  &done, nullptr, &q, nullptr);
  VC_CHECK(!err, "resampling " << from_rate << " Hz -> " << to_rate << " Hz failed: " << err);
  out.resize(done);
  return out;
}

Audio load_audio(const std::string& path, int target_rate) {
  Audio a = read_audio(path);
  a.samples = resample(a.samples, a.sample_rate, target_rate);
  a.sample_rate = target_rate;
  return a;
}

void write_wav(const std::string& path, const std::vector<float>& samples, int sample_rate, WavFormat format) {
  SF_INFO info{};
  info.samplerate = sample_rate;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | (format == WavFormat::Pcm16 ? SF_FORMAT_PCM_16 : SF_FORMAT_FLOAT);
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  SNDFILE* f = sf_open(tmp.c_str(), SFM_WRITE, &info);
  VC_CHECK(f, "cannot create " << tmp << ": " << sf_strerror(nullptr));
  if (format == WavFormat::Pcm16) sf_command(f, SFC_SET_CLIPPING, nullptr, SF_TRUE);
  const sf_count_t n = sf_writef_float(f, samples.data(), static_cast<sf_count_t>(samples.size()));
  sf_write_sync(f);
  const bool failed = n != static_cast<sf_count_t>(samples.size());
  const std::string message = sf_strerror(f);
  sf_close(f);
  if (failed) {
    std::remove(tmp.c_str());
    VC_FAIL("writing " << path << " failed: " << message);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    VC_FAIL("cannot rename " << tmp << " to " << path);
  }
}

}  // namespace vitscuda::io
