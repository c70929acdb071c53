// Philox4x32-10 streams. The stream of a seed is the sequence of 32-bit words
//   word(w) = philox4x32(key = seed, counter = w / 4)[w % 4],   w = 0, 1, 2, ...
// and Rng::offset() is the index of the next unused word. Every draw reads its own words
// and nothing else, so it is a pure function of (seed, offset) that a GPU thread can compute
// on its own:
//   uniform at w:  U = bits53(word(w), word(w+1)) / 2^53 in [0, 1)               (2 words)
//   normal at w:   u1 = (bits53(word(w), word(w+1)) + 1) / 2^53 in (0, 1],
//                  u2 = (bits53(word(w+2), word(w+3)) + 1) / 2^53 in (0, 1],
//                  z = sqrt(-2 ln u1) * cos(2 pi u2)                               (4 words)
// with bits53(hi, lo) = hi * 2^21 + (lo >> 11). Box-Muller's second output (the sine) is
// not used: then every normal has words of its own, a fill of n then m draws equals one fill
// of n + m for any n, and no two draws ever share a word. u1 > 0 keeps the logarithm finite.
#include "engine/random.h"

#include <cmath>
#include <type_traits>

#include "common/error.h"
#include "kernels/philox.h"

namespace vitscuda {

void philox4x32(uint64_t key, uint64_t counter, uint32_t out[4]) { kernels::philox4x32_block(key, counter, out); }

namespace {

using kernels::philox_normal_at;
using kernels::philox_scale_uniform;
using kernels::philox_stream_words;
using kernels::philox_uniform_at;

constexpr int64_t kParallelMin = 1 << 14;

}  // namespace

uint32_t Rng::next_u32() {
  uint32_t w;
  philox_stream_words(seed_, offset_, 1, &w);
  ++offset_;
  return w;
}

double Rng::uniform() {
  const double u = philox_uniform_at(seed_, offset_);
  offset_ += 2;
  return u;
}

void Rng::fill_uniform(Tensor& t, double lo, double hi) {
  VC_CHECK(lo <= hi, "fill_uniform: empty range [" << lo << ", " << hi << ")");
  const int64_t n = t.numel();
  const uint64_t base = offset_;
  const uint64_t seed = seed_;
  if (t.device() == Device::CUDA) {
    VC_CHECK(t.dtype() == DType::F32, "fill_uniform: CUDA tensors are float32 only, got " << t.describe());
#if VITSCUDA_HAVE_CUDA
    kernels::fill_uniform_cuda(t.data<float>(), n, seed, base, lo, hi);
#endif
    offset_ += 2 * static_cast<uint64_t>(n);
    return;
  }
  auto fill = [&](auto* p) {
    using T = std::remove_pointer_t<decltype(p)>;
    const T top = static_cast<T>(hi);
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      const double u = philox_uniform_at(seed, base + 2 * static_cast<uint64_t>(i));
      T v = static_cast<T>(philox_scale_uniform(lo, hi, u));
      // Rounding to T can reach hi itself; the range is half-open.
      if (v >= top && lo < hi) v = std::nextafter(top, static_cast<T>(lo));
      p[i] = v;
    }
  };
  if (t.dtype() == DType::F32)
    fill(t.data<float>());
  else
    fill(t.data<double>());
  offset_ += 2 * static_cast<uint64_t>(n);
}

void Rng::fill_normal(Tensor& t) {
  const int64_t n = t.numel();
  const uint64_t base = offset_;
  const uint64_t seed = seed_;
  if (t.device() == Device::CUDA) {
    VC_CHECK(t.dtype() == DType::F32, "fill_normal: CUDA tensors are float32 only, got " << t.describe());
#if VITSCUDA_HAVE_CUDA
    kernels::fill_normal_cuda(t.data<float>(), n, seed, base);
#endif
    offset_ += 4 * static_cast<uint64_t>(n);
    return;
  }
  auto fill = [&](auto* p) {
    using T = std::remove_pointer_t<decltype(p)>;
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(philox_normal_at(seed, base + 4 * static_cast<uint64_t>(i)));
  };
  if (t.dtype() == DType::F32)
    fill(t.data<float>());
  else
    fill(t.data<double>());
  offset_ += 4 * static_cast<uint64_t>(n);
}

}  // namespace vitscuda
