// Text to IPA phonemes as transformers' VitsTokenizer (phonemize=true) gets them from the `phonemizer`
// package (3.4): phonemizer.phonemize(text, language, backend="espeak", strip=True, preserve_punctuation=True,
// with_stress=True), then every run of whitespace made one space. Done natively with libespeak-ng
// (espeak_TextToPhonemes, IPA with "_" between phonemes, as phonemizer's library wrapper calls it),
// including phonemizer's punctuation handling: the text is cut at runs of punctuation marks, each piece
// phonemized on its own, and the marks put back by the same rules (Punctuation.preserve/restore).
#pragma once
#include <string>

namespace vitscuda::io {

// `language` is an espeak-ng language code ("en-us"); the voice is the first espeak-ng voice listing it,
// as phonemizer chooses. Thread-safe: espeak-ng keeps global state, so calls are serialised.
std::string phonemize_espeak(const std::string& text, const std::string& language);

// The espeak-ng version the phonemes come from (for `vitscuda info` and error messages).
std::string espeak_ng_version();

}  // namespace vitscuda::io
