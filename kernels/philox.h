// Philox4x32-10 and the normal/uniform draws built on it, shared by the CPU and CUDA code so
// both backends draw the same numbers for the same (seed, word offset). The stream layout is
// documented in engine/random.cpp.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define VC_HOST_DEVICE __host__ __device__
#else
#define VC_HOST_DEVICE
#endif

namespace vitscuda::kernels {

// Philox4x32-10 (Salmon et al., SC'11) with the multipliers and Weyl constants of Random123
// and cuRAND. The counter's upper 64 bits are 0; the key is the seed.
VC_HOST_DEVICE inline void philox4x32_block(uint64_t key, uint64_t counter, uint32_t out[4]) {
  const uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  const uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
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

// Words w .. w+count-1 (count <= 4) of the stream of `seed`.
VC_HOST_DEVICE inline void philox_stream_words(uint64_t seed, uint64_t w, int count, uint32_t* out) {
  uint32_t block[4];
  uint64_t loaded = ~uint64_t(0);
  for (int i = 0; i < count; ++i) {
    const uint64_t word = w + static_cast<uint64_t>(i);
    if (word / 4 != loaded) {
      loaded = word / 4;
      philox4x32_block(seed, loaded, block);
    }
    out[i] = block[word % 4];
  }
}

VC_HOST_DEVICE inline uint64_t philox_bits53(uint32_t hi, uint32_t lo) {
  return (static_cast<uint64_t>(hi) << 21) | (lo >> 11);
}

// U[0, 1) from words w, w+1.
VC_HOST_DEVICE inline double philox_uniform_at(uint64_t seed, uint64_t w) {
  uint32_t v[2];
  philox_stream_words(seed, w, 2, v);
  return static_cast<double>(philox_bits53(v[0], v[1])) / 9007199254740992.0;
}

// lo + (hi - lo) * u, rounded after the product and after the sum on both sides: nvcc contracts the
// plain expression into one FMA (one rounding), which would make CUDA draws differ from the CPU's in
// the last bit. Host code is built with -ffp-contract=off (CMakeLists.txt), so it never fuses.
VC_HOST_DEVICE inline double philox_scale_uniform(double lo, double hi, double u) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(lo, __dmul_rn(hi - lo, u));
#else
  return lo + (hi - lo) * u;
#endif
}

// N(0, 1) from words w .. w+3 (Box-Muller, cosine branch).
VC_HOST_DEVICE inline double philox_normal_at(uint64_t seed, uint64_t w) {
  uint32_t v[4];
  philox_stream_words(seed, w, 4, v);
  const double u1 = (static_cast<double>(philox_bits53(v[0], v[1])) + 1.0) / 9007199254740992.0;  // (0, 1]
  const double u2 = (static_cast<double>(philox_bits53(v[2], v[3])) + 1.0) / 9007199254740992.0;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925286766559 * u2);
}

// CUDA fills (float32): element i gets the draw at word `offset + 4 i` (normal) or
// `offset + 2 i` (uniform), exactly as Rng::fill_normal / fill_uniform on the CPU.
void fill_normal_cuda(float* y, int64_t n, uint64_t seed, uint64_t offset);
void fill_uniform_cuda(float* y, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi);

}  // namespace vitscuda::kernels
