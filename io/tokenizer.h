// Tokenizer: transformers' VitsTokenizer, with its three text front-ends: characters (mms-tts), uroman
// romanisation (mms-tts of non-Latin scripts, is_uroman=true) and espeak-ng phonemes (the original VITS
// voices, phonemize=true).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace vitscuda::io {

// How a tokenizer turns text into the symbols of its vocabulary (tokenizer_config.json).
enum class FrontEnd {
  Characters,  // phonemize=false, is_uroman=false: the (normalised) characters
  Uroman,      // is_uroman=true: text with non-ASCII characters romanised by uroman first
  Phonemes,    // phonemize=true: IPA phonemes from espeak-ng (language en-us, as transformers)
};
const char* front_end_name(FrontEnd f);  // "characters", "uroman", "phonemes"

struct TokenizerResult {
  std::vector<int32_t> ids;
  // The text as the vocabulary sees it: normalised, romanised or phonemised (before dropping characters).
  std::string front_end_text;
  // Characters of the (normalised) text that are not in the vocab and were dropped,
  // each once, in order of appearance (as UTF-8 strings). The caller reports them.
  std::vector<std::string> dropped;
};

class Tokenizer {
 public:
  // Reads DIR/vocab.json and, if present, DIR/tokenizer_config.json
  // (add_blank, normalize, pad_token, unk_token, language, phonemize, is_uroman).
  // Without tokenizer_config.json: add_blank and normalize true, pad "<pad>", characters (transformers'
  // own default would be phonemize=true; a model directory without the file is an mms-tts one).
  static Tokenizer from_dir(const std::string& model_dir);
  static Tokenizer from_vocab(std::map<std::string, int32_t> vocab, bool add_blank, bool normalize,
                              const std::string& pad_token);
  // As from_vocab, with the vocab's keys in file order (normalisation tries them
  // in this order, as transformers does with vocab.json's order).
  static Tokenizer from_ordered_vocab(const std::vector<std::pair<std::string, int32_t>>& vocab, bool add_blank,
                                      bool normalize, const std::string& pad_token,
                                      const std::string& unk_token = "<unk>");

  // Throws vitscuda::Error for empty text and for text with no character in the vocab.
  TokenizerResult encode(const std::string& text) const;

  // encode() in two steps, so that many texts share one run of uroman:
  // front_end_texts gives, for each text, the normalised text after romanisation or phonemisation
  // ("" for a blank text; throws for invalid UTF-8); encode_front_end_text turns one of them into ids
  // (`original` only names the text in errors).
  std::vector<std::string> front_end_texts(const std::vector<std::string>& texts) const;
  TokenizerResult encode_front_end_text(const std::string& front_end_text, const std::string& original) const;

  FrontEnd front_end() const { return front_end_; }
  // The front-end with its settings, e.g. "phonemes (espeak-ng 1.51, en-us)", for messages and info.
  std::string front_end_description() const;

  int32_t pad_id() const;  // id of pad_token; throws if the vocab lacks it
  // The id interspersed when add_blank is set: transformers always uses id 0.
  int32_t blank_id() const { return 0; }
  size_t vocab_size() const { return vocab_.size(); }
  bool add_blank() const { return add_blank_; }

 private:
  std::u32string normalize(const std::u32string& input) const;  // transformers' normalize_text
  std::map<std::string, int32_t> vocab_;  // key: one UTF-8 character (or a multi-char token)
  bool add_blank_ = true;
  bool normalize_ = true;
  std::string pad_token_ = "<pad>";
  std::string unk_token_ = "<unk>";
  std::string language_;  // "ron" enables transformers' Romanian comma-below fix
  FrontEnd front_end_ = FrontEnd::Characters;
  std::vector<std::string> vocab_order_;  // keys in file order, then the special tokens
};

}  // namespace vitscuda::io
