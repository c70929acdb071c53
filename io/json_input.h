// JSON read from outside input (config.json, vocab.json, tokenizer_config.json, checkpoint
// manifests, trainer state, JSONL manifests, safetensors headers).
//
// nlohmann's parser is iterative, but copying, comparing and dumping a value recurse once per
// nesting level: a few hundred kilobytes of '[' parse fine and then overflow the stack in the
// first error message or copy. None of these formats nests more than a few levels, so their
// readers parse through parse_json_input, which refuses anything deeper than kMaxJsonInputDepth.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "common/error.h"

namespace vitscuda::io {

inline constexpr int kMaxJsonInputDepth = 64;

// Json::parse(input...) (a syntax error still throws nlohmann's parse_error) that throws
// vitscuda::Error naming `source` as soon as arrays and objects nest deeper than
// kMaxJsonInputDepth.
template <typename Json, typename... Input>
Json parse_json_input(const std::string& source, Input&&... input) {
  const typename Json::parser_callback_t limit = [&source](int depth, nlohmann::json::parse_event_t event, Json&) {
    // `depth` counts the arrays and objects enclosing the one that starts.
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth >= kMaxJsonInputDepth)
      VC_FAIL(source << ": JSON arrays and objects nest deeper than " << kMaxJsonInputDepth
                     << " levels; no file of this kind does");
    return true;
  };
  return Json::parse(std::forward<Input>(input)..., limit);
}

}  // namespace vitscuda::io
