#include "engine/random.h"

#include <cmath>

#include "kernels/error.h"

namespace vitscuda {

void philox4x32(uint64_t key, uint64_t counter, uint32_t out[4]) {
  // Philox4x32-10 (Salmon et al., SC'11), the constants cuRAND and Random123 use.
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

uint32_t Rng::next_u32() {
  // Word `offset` of the stream is word (offset % 4) of block (offset / 4).
  uint32_t block[4];
  philox4x32(seed_, offset_ / 4, block);
  const uint32_t w = block[offset_ % 4];
  ++offset_;
  return w;
}

namespace {
// A uniform in (0, 1]: never 0, so log() in Box-Muller is finite.
double to_open_unit(uint32_t hi, uint32_t lo) {
  const uint64_t bits = (static_cast<uint64_t>(hi) << 21) ^ (lo >> 11);  // 53 random bits
  return (static_cast<double>(bits & ((uint64_t(1) << 53) - 1)) + 1.0) / 9007199254740992.0;
}
}  // namespace

double Rng::uniform() {
  const uint32_t a = next_u32(), b = next_u32();
  return to_open_unit(a, b) - 0x1p-53;  // [0, 1)
}

void Rng::fill_uniform(Tensor& t, double lo, double hi) {
  VC_CHECK(t.device() == Device::CPU, "fill_uniform: CPU tensors only, got " << t.describe());
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double u = uniform();
    const double v = lo + (hi - lo) * u;
    if (t.dtype() == DType::F32)
      t.data<float>()[i] = static_cast<float>(v);
    else
      t.data<double>()[i] = v;
  }
}

void Rng::fill_normal(Tensor& t) {
  VC_CHECK(t.device() == Device::CPU, "fill_normal: CPU tensors only, got " << t.describe());
  // Box-Muller: each Philox block (4 words) gives two uniforms in (0, 1] and two normals.
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; i += 2) {
    const uint32_t w0 = next_u32(), w1 = next_u32(), w2 = next_u32(), w3 = next_u32();
    const double u1 = to_open_unit(w0, w1), u2 = to_open_unit(w2, w3);
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double z0 = r * std::cos(2.0 * M_PI * u2), z1 = r * std::sin(2.0 * M_PI * u2);
    if (t.dtype() == DType::F32) {
      t.data<float>()[i] = static_cast<float>(z0);
      if (i + 1 < n) t.data<float>()[i + 1] = static_cast<float>(z1);
    } else {
      t.data<double>()[i] = z0;
      if (i + 1 < n) t.data<double>()[i + 1] = z1;
    }
  }
}

}  // namespace vitscuda
