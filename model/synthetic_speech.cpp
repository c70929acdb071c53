#include "model/synthetic_speech.h"

#include <cmath>
#include <cstddef>

namespace vitscuda::model {

std::vector<float> synthetic_speech(int sample_rate, double seconds, Rng& rng) {
  const size_t n = static_cast<size_t>(seconds * sample_rate);
  std::vector<float> wave(n);
  double phase = 0;
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / sample_rate;
    const double f0 = 140 + 30 * std::sin(2 * M_PI * 0.7 * t);
    phase += 2 * M_PI * f0 / sample_rate;
    double s = 0;
    for (int h = 1; h <= 12; ++h) s += std::sin(h * phase) / h;
    const double envelope = 0.5 + 0.5 * std::sin(2 * M_PI * 3.0 * t);
    wave[i] = static_cast<float>(0.15 * envelope * s + 0.003 * (rng.uniform() - 0.5));
  }
  return wave;
}

}  // namespace vitscuda::model
