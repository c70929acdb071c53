// Data preparation for training: manifest + audio -> validated, tokenized, resampled cache.
//
// For every manifest row: the text is tokenized with the model's tokenizer, the audio decoded
// (libsndfile), mixed to mono and resampled to the model's rate (libsoxr). A row is rejected,
// with the first reason that applies, for: speaker_out_of_range, empty_text, bad_text (not UTF-8),
// no_vocab_chars, missing_file, unreadable_audio, non_finite, too_long, too_short (under --min-seconds),
// silent, shorter_than_segment (fewer frames of `hop` samples than the training segment, --segment-frames)
// and more_tokens_than_frames (no monotonic alignment exists; model/alignment.h). Characters the tokenizer
// drops are a warning (accepted.tsv's last column), not a rejection. Manifest rows that do not
// parse are rejected with the manifest's reasons (bad_columns, bad_json, ...).
//
// Output in OUT: train.vcds and eval.vcds (io/dataset.h), rejected.tsv (id, line, path, reason,
// detail), accepted.tsv (id, line, split, seconds, tokens, speaker, dropped_chars), prepare.json
// (counts, durations, model and manifest identity). Every file is replaced atomically.
//
// Eval split: an utterance is held out when a hash of its id, mapped to [0, 1), is below
// eval_fraction, so membership does not depend on the rest of the corpus or on the order of rows.
// With eval_fraction > 0 and at least 2 accepted utterances, eval and train each get at least one.
//
// Overwriting: OUT may be prepared again with the same tokenizer. If OUT holds a cache made with a
// different tokenizer (vocab or tokenizer settings), preparing refuses unless `force` is set, so
// that a cache whose ids mean something else is never silently mixed up with another model.
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "io/manifest.h"

namespace vitscuda::model {

struct PrepareOptions {
  std::string manifest;
  std::string audio_dir;  // empty: the manifest's directory
  std::string model_dir;  // config.json + vocab.json (+ tokenizer_config.json); weights are not read
  std::string out_dir;
  io::ManifestFormat format = io::ManifestFormat::Auto;
  // 0: all. Otherwise stop after this many accepted utterances (the first N accepted in manifest
  // order; rows after that are not examined).
  size_t max_samples = 0;
  double eval_fraction = 0.02;  // in [0, 1)
  double min_seconds = 0.5;
  double max_seconds = 20.0;
  // Utterances with fewer spectrogram frames are rejected (shorter_than_segment): training decodes a random
  // window of this many frames (train --segment-frames, 32 = 8192 samples / hop 256 for MMS). 0: no minimum.
  int segment_frames = 32;
  int threads = 2;                // decoding threads
  bool force = false;             // replace a cache made with another tokenizer
  std::FILE* progress = nullptr;  // progress lines for long corpora; nullptr: quiet
};

struct PrepareRejection {
  std::string id;
  int line = 0;
  std::string path;
  std::string reason;
  std::string detail;
};

struct PrepareSummary {
  std::string manifest_path, manifest_format, out_dir, model_dir;
  size_t manifest_rows = 0;  // parsed rows plus rows the manifest parser rejected
  size_t parsed_rows = 0;    // rows the manifest parser accepted
  size_t examined = 0;       // rows checked (fewer than the parsed rows when max_samples stopped early)
  size_t accepted = 0, train_items = 0, eval_items = 0;
  double train_seconds = 0, eval_seconds = 0;
  int sample_rate = 0, hop = 0;
  uint64_t tokenizer_hash = 0;
  std::string front_end;  // io::front_end_name of the model's tokenizer
  std::vector<PrepareRejection> rejected;  // sorted by line
  std::map<std::string, size_t> rejected_by_reason;
  std::map<std::string, size_t> dropped_chars;  // character -> utterances in which it was dropped
  size_t utterances_with_dropped_chars = 0;
  double elapsed_seconds = 0;
};

// Runs the whole preparation. Returns the summary also when nothing was accepted (then no cache is
// written, rejected.tsv is, and stale outputs of an earlier run in OUT are removed): check
// `accepted`. Throws vitscuda::Error for unusable inputs (model dir, manifest, options, OUT).
PrepareSummary prepare_dataset(const PrepareOptions& options);

// The on-screen summary: accepted count and hours, rejections per reason with the first few ids.
std::string format_prepare_summary(const PrepareSummary& summary);

// Identity of a model directory's tokenizer: vocab.json (with its key order) and the
// tokenizer_config.json settings that change tokenization (with phonemize=true, espeak-ng's version too). Stored in the caches' headers, so that
// training can refuse a cache made for another vocabulary.
uint64_t tokenizer_hash(const std::string& model_dir);

}  // namespace vitscuda::model
