// Reproducible random numbers: Philox4x32-10, counter-based, so every draw is a
// pure function of (seed, stream offset) on any backend.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace vitscuda {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }      // number of 32-bit words consumed
  void set_offset(uint64_t offset) { offset_ = offset; }

  // Fills with independent N(0, 1) draws (Box-Muller on Philox output) and advances the stream.
  void fill_normal(Tensor& t);
  // Fills with U[lo, hi) draws and advances the stream.
  void fill_uniform(Tensor& t, double lo, double hi);
  double uniform();  // one U[0, 1) draw
  uint32_t next_u32();

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The Philox4x32-10 block for (key, counter): four 32-bit outputs.
void philox4x32(uint64_t key, uint64_t counter, uint32_t out[4]);

}  // namespace vitscuda
