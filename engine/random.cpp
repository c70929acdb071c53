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

#include "kernels/error.h"

namespace vitscuda {

void philox4x32(uint64_t key, uint64_t counter, uint32_t out[4]) {
  // Philox4x32-10 (Salmon et al., SC'11) with the multipliers and Weyl constants of Random123
  // and cuRAND. The counter's upper 64 bits are 0; the key is the seed.
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

namespace {

// Words w .. w+count-1 (count <= 4) of the stream of `seed`.
void stream_words(uint64_t seed, uint64_t w, int count, uint32_t* out) {
  uint32_t block[4];
  uint64_t loaded = ~uint64_t(0);
  for (int i = 0; i < count; ++i) {
    const uint64_t word = w + static_cast<uint64_t>(i);
    if (word / 4 != loaded) {
      loaded = word / 4;
      philox4x32(seed, loaded, block);
    }
    out[i] = block[word % 4];
  }
}

uint64_t bits53(uint32_t hi, uint32_t lo) { return (static_cast<uint64_t>(hi) << 21) | (lo >> 11); }
constexpr double kTwoPow53 = 9007199254740992.0;

double uniform_at(uint64_t seed, uint64_t w) {
  uint32_t v[2];
  stream_words(seed, w, 2, v);
  return static_cast<double>(bits53(v[0], v[1])) / kTwoPow53;  // [0, 1)
}

double normal_at(uint64_t seed, uint64_t w) {
  uint32_t v[4];
  stream_words(seed, w, 4, v);
  const double u1 = (static_cast<double>(bits53(v[0], v[1])) + 1.0) / kTwoPow53;  // (0, 1]
  const double u2 = (static_cast<double>(bits53(v[2], v[3])) + 1.0) / kTwoPow53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

constexpr int64_t kParallelMin = 1 << 14;

}  // namespace

uint32_t Rng::next_u32() {
  uint32_t w;
  stream_words(seed_, offset_, 1, &w);
  ++offset_;
  return w;
}

double Rng::uniform() {
  const double u = uniform_at(seed_, offset_);
  offset_ += 2;
  return u;
}

void Rng::fill_uniform(Tensor& t, double lo, double hi) {
  VC_CHECK(t.device() == Device::CPU, "fill_uniform: CPU tensors only, got " << t.describe());
  VC_CHECK(lo <= hi, "fill_uniform: empty range [" << lo << ", " << hi << ")");
  const int64_t n = t.numel();
  const uint64_t base = offset_;
  const uint64_t seed = seed_;
  auto fill = [&](auto* p) {
    using T = std::remove_pointer_t<decltype(p)>;
    const T top = static_cast<T>(hi);
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      T v = static_cast<T>(lo + (hi - lo) * uniform_at(seed, base + 2 * static_cast<uint64_t>(i)));
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
  VC_CHECK(t.device() == Device::CPU, "fill_normal: CPU tensors only, got " << t.describe());
  const int64_t n = t.numel();
  const uint64_t base = offset_;
  const uint64_t seed = seed_;
  auto fill = [&](auto* p) {
    using T = std::remove_pointer_t<decltype(p)>;
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(normal_at(seed, base + 4 * static_cast<uint64_t>(i)));
  };
  if (t.dtype() == DType::F32)
    fill(t.data<float>());
  else
    fill(t.data<double>());
  offset_ += 4 * static_cast<uint64_t>(n);
}

}  // namespace vitscuda
