// Tokenizer: transformers' VitsTokenizer for the mms-tts checkpoints (no phonemizer, no uroman).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace vitscuda::io {

struct TokenizerResult {
  std::vector<int32_t> ids;
  // Characters of the (normalised) text that are not in the vocab and were dropped,
  // each once, in order of appearance (as UTF-8 strings). The caller reports them.
  std::vector<std::string> dropped;
};

class Tokenizer {
 public:
  // Reads DIR/vocab.json and, if present, DIR/tokenizer_config.json
  // (add_blank, normalize, pad_token, unk_token, language, phonemize, is_uroman);
  // phonemize=true or is_uroman=true is an error. Without tokenizer_config.json:
  // add_blank and normalize true, pad "<pad>", no phonemizer.
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

  int32_t pad_id() const;  // id of pad_token; throws if the vocab lacks it
  // The id interspersed when add_blank is set: transformers always uses id 0.
  int32_t blank_id() const { return 0; }
  size_t vocab_size() const { return vocab_.size(); }
  bool add_blank() const { return add_blank_; }

 private:
  std::map<std::string, int32_t> vocab_;  // key: one UTF-8 character (or a multi-char token)
  bool add_blank_ = true;
  bool normalize_ = true;
  std::string pad_token_ = "<pad>";
  std::string unk_token_ = "<unk>";
  std::string language_;  // "ron" enables transformers' Romanian comma-below fix
  std::vector<std::string> vocab_order_;  // keys in file order, then the special tokens
};

}  // namespace vitscuda::io
