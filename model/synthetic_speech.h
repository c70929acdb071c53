// A speech-like test signal for benchmarks and `vitscuda selftest`, where no corpus is at hand.
#pragma once
#include <vector>

#include "engine/random.h"

namespace vitscuda::model {

// `seconds` of audio at `sample_rate`: harmonics of a gliding f0 under a syllable-rate envelope,
// plus a little noise from `rng`.
std::vector<float> synthetic_speech(int sample_rate, double seconds, Rng& rng);

}  // namespace vitscuda::model
