// Strict safetensors reader and writer.
// Reader: header length bounded by the file size, header JSON validated, every
// entry's dtype, shape and [begin, end) checked (in bounds, size = numel * itemsize,
// no overlaps, no gaps); nothing is ever read past the end of the file.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace vitscuda::io {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as in the file: "F32", "F16", "BF16", "F64", "I64", ...
  Shape shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Reads and validates the whole file; throws vitscuda::Error naming the file and the problem.
  static SafetensorsFile open(const std::string& path);
  static SafetensorsFile from_bytes(std::vector<uint8_t> bytes, const std::string& source);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // file order (by offset)
  const SafetensorsEntry* find(const std::string& name) const;               // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // F32, F16, BF16 and F64 converted to an f32 CPU tensor; other dtypes are an error naming the tensor.
  Tensor load_f32(const std::string& name) const;
  // The stored bytes exactly (for bit-exact re-export).
  std::vector<uint8_t> raw_bytes(const std::string& name) const;

 private:
  std::string path_;
  std::vector<uint8_t> bytes_;
  uint64_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

struct SafetensorsWriteEntry {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16" or "F64"
  Shape shape;
  std::vector<uint8_t> bytes;  // exactly numel * itemsize
};

// Writes atomically (temporary file in the same directory, fsync, rename):
// a failure never leaves a partial file at `path`. Tensors are laid out in the
// given order; the header is padded with spaces to a multiple of 8 bytes.
void write_safetensors(const std::string& path, const std::vector<SafetensorsWriteEntry>& entries,
                       const std::map<std::string, std::string>& metadata);

// f32 tensor -> bytes in the given dtype (F16/BF16 round to nearest even).
std::vector<uint8_t> encode_f32(const Tensor& t, const std::string& dtype);

}  // namespace vitscuda::io
