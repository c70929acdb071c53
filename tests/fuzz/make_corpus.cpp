// Writes the seed corpora of the fuzz targets: small valid inputs made with each format's own
// writer (or copied from the repository's test data), plus a few edge cases.
// Usage: make_corpus REPO_ROOT OUT_DIR  (OUT_DIR/<target>/ per target; scripts/fuzz.sh
// --make-corpus writes tests/fuzz/corpus with it).
#include <sndfile.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "fuzz_support.h"
#include "io/audio.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/hf_config.h"
#include "io/metrics_log.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using namespace vitscuda;

namespace {

std::string g_root, g_out;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = g_out + "/" + target;
  fs::create_directories(dir);
  fuzz::write_file(dir + "/" + name, bytes);
}
// A seed for a target whose first input byte is a mode.
void seed(const std::string& target, const std::string& name, unsigned char mode, const std::string& bytes) {
  seed(target, name, std::string(1, static_cast<char>(mode)) + bytes);
}

std::string repo(const std::string& relative) { return read(g_root + "/" + relative); }
std::string scratch(const std::string& name) { return fuzz::scratch_dir() + "/" + name; }

std::vector<uint8_t> f32_bytes(const std::vector<float>& v, const std::string& dtype) {
  return io::encode_f32(Tensor::from_vector(v, {static_cast<int64_t>(v.size())}), dtype);
}

void safetensors_seeds() {
  const std::string p = scratch("s.safetensors");
  io::write_safetensors(p,
                        {{"w.f32", "F32", {2, 3}, f32_bytes({1, -2, 3.5f, 0, 1e-3f, -7}, "F32")},
                         {"w.f16", "F16", {4}, f32_bytes({1, -0.5f, 65504, 6e-8f}, "F16")},
                         {"w.bf16", "BF16", {2}, f32_bytes({3.25f, -1e30f}, "BF16")},
                         {"w.f64", "F64", {1}, f32_bytes({0.1f}, "F64")},
                         {"ids", "I64", {2}, std::vector<uint8_t>(16, 1)},
                         {"mask", "BOOL", {3}, {1, 0, 1}},
                         {"scalar", "F32", {}, f32_bytes({2}, "F32")},
                         {"empty", "F32", {0, 5}, {}}},
                        {{"format", "pt"}});
  seed("fuzz_safetensors", "mixed_dtypes.safetensors", read(p));
  io::write_safetensors(p, {}, {{"format", "pt"}});
  seed("fuzz_safetensors", "metadata_only.safetensors", read(p));
  io::write_safetensors(p, {}, {});
  seed("fuzz_safetensors", "empty_header.safetensors", read(p));
  seed("fuzz_safetensors", "reference_torch.safetensors", repo("tests/data/io/reference_torch.safetensors"));
  // A longer header, like a model's: libFuzzer's input length limit starts at the largest seed.
  std::vector<io::SafetensorsWriteEntry> layers;
  for (int i = 0; i < 24; ++i) {
    const std::string prefix = "text_encoder.encoder.layers." + std::to_string(i) + ".";
    layers.push_back({prefix + "attention.k_proj.weight", i % 2 ? "F16" : "F32", {2, 2},
                      f32_bytes({0.5f, -1, 2, 0}, i % 2 ? "F16" : "F32")});
  }
  layers.push_back({"decoder.conv_pre.parametrizations.weight.original0", "BF16", {1, 1, 1}, f32_bytes({1}, "BF16")});
  io::write_safetensors(p, layers, {{"format", "pt"}});
  seed("fuzz_safetensors", "many_tensors.safetensors", read(p));
  // Edge cases: header length past the end; header that is not an object.
  seed("fuzz_safetensors", "length_past_end", std::string("\xff\0\0\0\0\0\0\0{}", 10));
  seed("fuzz_safetensors", "array_header", std::string("\x02\0\0\0\0\0\0\0[]", 10));
}

void optimizer_seeds() {
  const std::string p = scratch("o.safetensors");
  for (DType dtype : {DType::F32, DType::F64}) {
    io::OptimizerState s;
    s.exp_avg = Tensor::zeros({3}, dtype);
    s.exp_avg_sq = Tensor::full({3}, 0.25, dtype);
    s.step = 12;
    io::write_optimizer_state(p, s);
    seed("fuzz_optimizer_state", dtype == DType::F32 ? "f32.safetensors" : "f64.safetensors", read(p));
  }
  io::OptimizerState empty;
  empty.exp_avg = Tensor::zeros({0});
  empty.exp_avg_sq = Tensor::zeros({0});
  io::write_optimizer_state(p, empty);
  seed("fuzz_optimizer_state", "empty.safetensors", read(p));
}

void config_seeds() {
  seed("fuzz_hf_config", "mms_tts_eng.json", repo("tests/data/mms_tts_eng/config.json"));
  seed("fuzz_hf_config", "demo_model.json", repo("scripts/demo_model/config.json"));
  seed("fuzz_hf_config", "tiny_dp_multispeaker.json", repo("tests/data/golden/tiny_dp_multispeaker/config.json"));
  seed("fuzz_hf_config", "transformers_defaults.json", repo("tests/data/io/vits_config_transformers.json"));
  seed("fuzz_hf_config", "to_json.json", io::VitsConfig{}.to_json().dump(2));
  seed("fuzz_hf_config", "empty_object.json", "{}");
  seed("fuzz_hf_config", "wrong_types.json",
       R"({"model_type": "vits", "hidden_size": 1.5, "upsample_rates": [8, -1], "pad_token_id": null,)"
       R"( "resblock_dilation_sizes": [[1], []], "hidden_act": 3})");
}

void tokenizer_seeds() {
  const std::string sep = "\n==\n";
  const nlohmann::json cases = nlohmann::json::parse(repo("tests/data/io/tokenizer_cases.json"));
  const std::string eng_vocab = repo("tests/data/io/mms_tts_eng/vocab.json");
  const std::string eng_config = repo("tests/data/io/mms_tts_eng/tokenizer_config.json");
  std::string texts;
  for (const auto& c : cases["tokenizers"][0]["cases"]) texts += sep + c["text"].get<std::string>();
  seed("fuzz_tokenizer", "mms_tts_eng", eng_vocab + sep + eng_config + texts);
  seed("fuzz_tokenizer", "vocab_only", eng_vocab);
  seed("fuzz_tokenizer", "demo_model", repo("scripts/demo_model/vocab.json") + sep +
                                           repo("scripts/demo_model/tokenizer_config.json") + sep + "Hello there." +
                                           sep + "  " + sep + "\xc3\x89t\xc3\xa9 \xe2\x80\x93 ok");
  for (const auto& t : cases["tokenizers"]) {
    if (t["name"] != "custom_case_keys") continue;
    nlohmann::json config = {{"add_blank", t["add_blank"]}, {"pad_token", t["pad_token"]}, {"normalize", true}};
    std::string custom = t["vocab"].dump() + sep + config.dump();
    for (const auto& c : t["cases"]) custom += sep + c["text"].get<std::string>();
    seed("fuzz_tokenizer", "custom_case_keys", custom);
  }
  // The front-ends: espeak phonemes (run by the target) and uroman (its missing-install error, see fuzz_tokenizer.cpp).
  const nlohmann::json front_end_cases = nlohmann::json::parse(repo("tests/data/io/frontend_cases.json"));
  for (const auto& t : front_end_cases["tokenizers"]) {
    const std::string tok_dir = "tests/data/io/" + t["dir"].get<std::string>();
    std::string seed_text = repo(tok_dir + "/vocab.json") + sep + repo(tok_dir + "/tokenizer_config.json");
    for (const auto& c : t["cases"]) seed_text += sep + c["text"].get<std::string>();
    seed("fuzz_tokenizer", "front_end_" + t["name"].get<std::string>(), seed_text);
  }
  seed("fuzz_tokenizer", "special_tokens",
       R"({"<pad>": 0, "a": 1, "b": 2, "<unk>": 3, "ab": 4})" + sep +
           R"({"add_blank": false, "normalize": false, "pad_token": {"content": "<pad>"}, "unk_token": "<unk>", "language": "ron"})" +
           sep + "a<pad>b<unk>ab" + sep + "\xc8\x9b" + sep + "<pad>");
}

void manifest_seeds() {
  // Mode byte (fuzz_manifest.cpp): 0-3 auto-detection as metadata.csv, train.tsv, train.jsonl,
  // list.txt; 4 LJSpeech, 5 CSV, 6 TSV, 7 JSONL.
  const std::string lj = "LJ001-0001|Printing, in the only sense|Printing, in the only sense\n"
                         "beside|Text \"quoted\" here|\n"
                         "missing|two|columns|too|many\n";
  seed("fuzz_manifest", "ljspeech_auto", 0, lj);
  seed("fuzz_manifest", "ljspeech", 4, lj + "x.flac|flac id\r\n\n");
  const std::string csv = "path,text,speaker,id\n"
                          "a.wav,\"Hello, world\",0,first\n"
                          "b.wav,\"line one\nline two\",1,\n"
                          "c.wav,\"doubled \"\"quotes\"\"\",x,third\n"
                          "d.wav,\"unterminated\n";
  seed("fuzz_manifest", "csv_auto", 0, "\xEF\xBB\xBF" + csv);
  seed("fuzz_manifest", "csv", 5, csv);
  seed("fuzz_manifest", "csv_pipe", 5, "audio|transcript\n/abs/a.wav|Absolute path\nb.wav|\"quoted|pipe\"\n");
  const std::string tsv = "client_id\tpath\tsentence\tspeaker_id\n"
                          "c1\tclips/a.mp3\tA \"bare\" quote\t3\n"
                          "c2\tclips/b.mp3\tWrong column count\n"
                          "c3\tclips/a.mp3\tDuplicate id\t4\n";
  seed("fuzz_manifest", "tsv_auto", 1, tsv);
  seed("fuzz_manifest", "tsv", 6, tsv);
  seed("fuzz_manifest", "tsv_sniffed", 3, "file\ttext\nx.wav\thi\n");
  const std::string jsonl = "{\"audio\": \"a.wav\", \"text\": \"Hello\", \"speaker\": 0}\n"
                            "{\"Audio_Filepath\": \"b.wav\", \"TRANSCRIPT\": \"Case\", \"speaker_id\": \"2\", \"id\": 7}\n"
                            "{\"audio\": \"c.wav\"}\n"
                            "[1, 2]\n"
                            "{\"audio\": 3, \"text\": \"x\"}\n"
                            "{\"wav\": \"d.wav\", \"text\": \"neg\", \"speaker\": -1}\n";
  seed("fuzz_manifest", "jsonl_auto", 2, jsonl);
  seed("fuzz_manifest", "jsonl", 7, jsonl);
  seed("fuzz_manifest", "jsonl_sniffed", 3, "  {\"filename\": \"a.wav\", \"sentence\": \"hi\"}\n");
  // Longer manifests, as real ones are: libFuzzer's input length limit starts at the largest seed.
  std::string lj_long, csv_long = "id,path,text,speaker\n", tsv_long = "path\tsentence\tspeaker_id\n", jsonl_long;
  for (int i = 1; i <= 24; ++i) {
    const std::string n = std::to_string(i);
    const std::string text = "Sentence number " + n + ", with \"quotes\" and 'apostrophes'.";
    lj_long += "LJ001-" + std::string(4 - n.size(), '0') + n + "|" + text + "|" + text + "\n";
    csv_long += "u" + n + ",wavs/u" + n + ".wav,\"" + text.substr(0, 20) + "\"\"x\"\"\"," + std::to_string(i % 3) + "\n";
    tsv_long += "clips/c" + n + ".mp3\t" + text + "\t" + std::to_string(i % 4) + "\n";
    jsonl_long += nlohmann::json({{"audio_filepath", "data/" + n + ".flac"}, {"text", text}, {"speaker", i % 2}}).dump() + "\n";
  }
  seed("fuzz_manifest", "ljspeech_long", 4, lj_long);
  seed("fuzz_manifest", "csv_long", 5, csv_long);
  seed("fuzz_manifest", "tsv_long", 1, tsv_long);
  seed("fuzz_manifest", "jsonl_long", 2, jsonl_long);
}

void dataset_seeds() {
  const std::string p = scratch("d.vcds");
  {
    io::DatasetWriter w(p, 16000, 0x1234);
    w.finish();
  }
  const std::string empty = read(p);
  {
    io::DatasetWriter w(p, 22050, 0xfeedfacecafebeefULL);
    w.add({"utt-1", -1, {0, 5, 0, 7, 0}, {0.1f, -0.2f, 0.3f}});
    w.add({"speaker/two", 2, {1}, std::vector<float>(9, 0.5f)});
    w.add({"", 0, {}, {}});
    w.finish();
  }
  const std::string three = read(p);
  // Mode byte (fuzz_dataset.cpp): bit 0 recompute the CRCs, bit 1 verify HeaderOnly.
  for (unsigned char mode = 0; mode < 4; ++mode) seed("fuzz_dataset", "three_items_" + std::to_string(mode), mode, three);
  seed("fuzz_dataset", "empty_0", 0, empty);
  seed("fuzz_dataset", "empty_fixcrc", 1, empty);
  seed("fuzz_dataset", "header_only", 1, empty.substr(0, 64));
}

void checkpoint_seeds() {
  const std::string checkpoints = scratch("checkpoints");
  io::CheckpointWriter w(checkpoints, 7);
  for (const fuzz::FixtureFile& f : fuzz::checkpoint_fixture_files()) w.write_file(f.name, f.content);
  const io::CheckpointInfo info = w.commit();
  const std::string manifest = read(info.path_of(io::kCheckpointManifestName));
  // Mode byte (fuzz_checkpoint_manifest.cpp): bit 0 recompute manifest_crc32, bit 1 directory step-7.
  seed("fuzz_checkpoint_manifest", "valid_step7", 2, manifest);
  seed("fuzz_checkpoint_manifest", "valid_plain", 0, manifest);
  nlohmann::json j = nlohmann::json::parse(manifest);
  j["files"].push_back({{"name", fuzz::kCheckpointFixtureSubdir}, {"size", 0}, {"crc32", "00000000"}});
  seed("fuzz_checkpoint_manifest", "lists_directory", 1, j.dump(2));
  j = nlohmann::json::parse(manifest);
  j.erase("manifest_crc32");
  j["version"] = 1;
  seed("fuzz_checkpoint_manifest", "version1", 2, j.dump());
  j["files"][0]["crc32"] = "DEADBEEF";
  j["files"][1]["name"] = "../escape";
  seed("fuzz_checkpoint_manifest", "bad_entries", 3, j.dump());

  io::TrainerState s;
  s.step = 40;
  s.epoch = 2;
  s.position_in_epoch = 3;
  s.rng_seed = 7;
  s.rng_offset = 123456789012ULL;
  s.learning_rate = 2e-4;
  s.data_order = {3, 0, 4, 1, 2};
  s.best_eval_loss = 0.75;
  s.elapsed_seconds = 12.5;
  s.config = {{"batch_size", 4}, {"lr", 2e-4}, {"model", "models/eng"}};
  seed("fuzz_trainer_state", "full.json", io::trainer_state_to_json(s).dump(2));
  s.data_order.clear();
  for (int64_t i = 0; i < 300; ++i) s.data_order.push_back((i * 7) % 300);  // 7 is prime to 300: a permutation
  s.position_in_epoch = 299;
  seed("fuzz_trainer_state", "long_order.json", io::trainer_state_to_json(s).dump());
  s.best_eval_loss.reset();
  s.data_order.clear();
  s.position_in_epoch = 0;
  s.config = nlohmann::json::object();
  seed("fuzz_trainer_state", "fresh.json", io::trainer_state_to_json(s).dump());
}

void metrics_seeds() {
  seed("fuzz_metrics_log", "clean.jsonl",
       "{\"step\":1,\"loss\":0.5}\n{\"step\":2,\"loss\":null,\"lr\":2e-4}\n{\"eval\":true,\"step\":2}\n");
  seed("fuzz_metrics_log", "torn_tail.jsonl", "{\"step\":1,\"loss\":0.5}\n{\"step\":2,\"lo");
  seed("fuzz_metrics_log", "bad_tail_lines.jsonl", "{\"step\":1}\n[1]\nnot json\n{\"step\":3}");
  seed("fuzz_metrics_log", "bad_middle.jsonl", "{\"step\":1}\ngarbage\n{\"step\":3}\n");
  std::string run;
  for (int i = 1; i <= 30; ++i)
    run += nlohmann::json({{"step", i}, {"loss", 1.0 / i}, {"lr", 2e-4}, {"samples_per_s", 3.5}}).dump() + "\n";
  seed("fuzz_metrics_log", "thirty_steps.jsonl", run);
}

// A short tone in the given libsndfile format (small enough to keep the corpus small).
std::string tone(int format, int channels, int rate, int frames) {
  const std::string p = scratch("tone.bin");
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  SNDFILE* f = sf_open(p.c_str(), SFM_WRITE, &info);
  if (!f) throw std::runtime_error(std::string("libsndfile cannot write format: ") + sf_strerror(nullptr));
  std::vector<float> samples(static_cast<size_t>(frames) * channels);
  for (size_t i = 0; i < samples.size(); ++i) samples[i] = 0.5f * std::sin(0.05f * static_cast<float>(i));
  sf_writef_float(f, samples.data(), frames);
  sf_close(f);
  return read(p);
}

void audio_seeds() {
  // Mode byte (fuzz_audio.cpp): the file name's extension, .wav .flac .ogg .mp3 .au .gsm .vox .raw.
  seed("fuzz_audio", "pcm16_mono.wav", 0, tone(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 16000, 200));
  seed("fuzz_audio", "float_stereo.wav", 0, tone(SF_FORMAT_WAV | SF_FORMAT_FLOAT, 2, 22050, 100));
  seed("fuzz_audio", "ulaw_8k.wav", 0, tone(SF_FORMAT_WAV | SF_FORMAT_ULAW, 1, 8000, 200));
  seed("fuzz_audio", "adpcm.wav", 0, tone(SF_FORMAT_WAV | SF_FORMAT_IMA_ADPCM, 1, 16000, 505));
  seed("fuzz_audio", "pcm24.flac", 1, tone(SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 1, 44100, 300));
  seed("fuzz_audio", "vorbis.ogg", 2, tone(SF_FORMAT_OGG | SF_FORMAT_VORBIS, 1, 16000, 400));
  seed("fuzz_audio", "pcm16.au", 4, tone(SF_FORMAT_AU | SF_FORMAT_PCM_16, 1, 11025, 100));
  seed("fuzz_audio", "pcm8.aiff", 0, tone(SF_FORMAT_AIFF | SF_FORMAT_PCM_S8, 3, 16000, 100));
  seed("fuzz_audio", "gsm610.gsm", 5, tone(SF_FORMAT_RAW | SF_FORMAT_GSM610, 1, 8000, 320));
  seed("fuzz_audio", "w64_double", 0, tone(SF_FORMAT_W64 | SF_FORMAT_DOUBLE, 1, 1, 4));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_corpus REPO_ROOT OUT_DIR\n");
    return 2;
  }
  g_root = argv[1];
  g_out = argv[2];
  safetensors_seeds();
  optimizer_seeds();
  config_seeds();
  tokenizer_seeds();
  manifest_seeds();
  dataset_seeds();
  checkpoint_seeds();
  metrics_seeds();
  audio_seeds();
  std::printf("make_corpus: wrote %s\n", g_out.c_str());
  return 0;
}
