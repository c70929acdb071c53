// Shared by the golden-gradient tests of the training objectives: reading a golden step's settings, and every
// gradient a golden file holds against the parameter store's, with the worst error printed.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "engine/parameters.h"
#include "io/safetensors.h"
#include "model/mel.h"
#include "support/test_support.h"

namespace vitscuda::testing {

// A golden file's metadata value as a number.
inline int metadata_int(const io::SafetensorsFile& f, const char* key) { return std::stoi(f.metadata().at(key)); }
inline double metadata_double(const io::SafetensorsFile& f, const char* key) {
  return std::stod(f.metadata().at(key));
}

// The mel settings a golden training step was computed with (its metadata: sample_rate, n_fft, hop, win, n_mels).
inline model::MelConfig golden_mel_config(const io::SafetensorsFile& f) {
  model::MelConfig mc;
  mc.sample_rate = metadata_int(f, "sample_rate");
  mc.n_fft = metadata_int(f, "n_fft");
  mc.hop = metadata_int(f, "hop");
  mc.win = metadata_int(f, "win");
  mc.n_mels = metadata_int(f, "n_mels");
  return mc;
}

// Every trainable parameter's gradient against the file's `prefix`<name> within `tolerance` relative L2; a
// frozen parameter must have no gradient in the file, and every gradient in the file must be compared. The
// attention key biases are checked against 0 within `key_bias_tolerance` instead: softmax is invariant to a
// per-query shift, so their true gradient is 0 and both sides hold rounding noise. Returns how many were compared.
inline size_t expect_gradients_match(const io::SafetensorsFile& f, const std::string& prefix, const ParameterStore& store,
                                     double tolerance, double key_bias_tolerance, const std::string& what) {
  size_t checked = 0;
  double worst = 0;
  std::string worst_name;
  for (const ParameterInfo& p : store.params()) {
    const io::SafetensorsEntry* e = f.find(prefix + p.name);
    if (!store.trainable(p.name)) {
      EXPECT_EQ(e, nullptr) << what << ": " << p.name << " is frozen here but the reference trained it";
      continue;
    }
    EXPECT_NE(e, nullptr) << what << ": the reference has no gradient for trainable " << p.name;
    if (!e) continue;
    const Tensor expected = f.load_f32(e->name).reshape(p.shape);
    const Tensor ours = store.grad(p.name);
    ++checked;
    if (p.name.find("attention.k_proj.bias") != std::string::npos) {
      EXPECT_LT(max_abs_diff(ours, Tensor::zeros(p.shape)), key_bias_tolerance) << what << ": " << p.name;
      continue;
    }
    const double err = relative_l2(ours, expected);
    if (err > worst) {
      worst = err;
      worst_name = p.name;
    }
    EXPECT_LT(err, tolerance) << what << ": " << p.name;
  }
  std::printf("  %s: %zu parameter gradients, worst relative L2 error %.2e (%s)\n", what.c_str(), checked, worst,
              worst_name.c_str());
  const size_t in_file = static_cast<size_t>(std::count_if(
      f.entries().begin(), f.entries().end(), [&](const io::SafetensorsEntry& x) { return x.name.rfind(prefix, 0) == 0; }));
  EXPECT_EQ(checked, in_file) << what << ": every gradient of the file is compared";
  return checked;
}

}  // namespace vitscuda::testing
