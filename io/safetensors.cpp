#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "common/error.h"
#include "io/json_input.h"

namespace vitscuda::io {

namespace {

using ordered_json = nlohmann::ordered_json;

// Same bound as the reference (Rust) implementation: a larger header is corrupt or hostile.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Item sizes of the dtypes the format defines with a whole number of bytes per element.
size_t dtype_itemsize(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8},
  };
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

bool host_is_little_endian() {
  const uint16_t probe = 1;
  uint8_t first = 0;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string json_type_name(const ordered_json& v) {
  if (v.is_number_unsigned() || v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "float";
  return v.type_name();
}

// Product of the dims, or false when it does not fit in 63 bits.
bool checked_numel(const Shape& shape, uint64_t& numel) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    uint64_t ud = static_cast<uint64_t>(d);
    if (ud != 0 && n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ud) return false;
    n *= ud;
  }
  numel = n;
  return true;
}

// Parses the header JSON rejecting duplicate keys at any depth (the format maps
// names to tensors; a repeated name would silently shadow a tensor) and nesting deeper than
// kMaxJsonInputDepth (see io/json_input.h: later copies and dumps recurse once per level).
ordered_json parse_header_json(const char* begin, const char* end, const std::string& source) {
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, ordered_json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth >= kMaxJsonInputDepth)
      VC_FAIL(source << ": safetensors header nests arrays and objects deeper than " << kMaxJsonInputDepth
                     << " levels");
    if (event == E::object_start) {
      keys_per_object.emplace_back();
    } else if (event == E::object_end) {
      if (!keys_per_object.empty()) keys_per_object.pop_back();
    } else if (event == E::key && !keys_per_object.empty()) {
      const std::string key = parsed.get<std::string>();
      if (!keys_per_object.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  ordered_json header;
  try {
    header = ordered_json::parse(begin, end, callback);
  } catch (const nlohmann::json::exception& e) {
    VC_FAIL(source << ": safetensors header is not valid JSON: " << e.what());
  }
  VC_CHECK(duplicate.empty(), source << ": safetensors header has the key '" << duplicate << "' more than once");
  return header;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  VC_CHECK(in, path << ": cannot open safetensors file: " << std::strerror(errno));
  const std::streamoff size = in.tellg();
  VC_CHECK(size >= 0, path << ": cannot determine the file size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0) in.read(reinterpret_cast<char*>(bytes.data()), size);
  VC_CHECK(in, path << ": read error after " << in.gcount() << " of " << size << " bytes");
  return from_bytes(std::move(bytes), path);
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<uint8_t> bytes, const std::string& source) {
  VC_CHECK(host_is_little_endian(), "safetensors data is little-endian; big-endian hosts are not supported");
  SafetensorsFile f;
  f.path_ = source;
  const uint64_t file_size = bytes.size();
  VC_CHECK(file_size >= 8, source << ": file is " << file_size
                                  << " bytes, shorter than the 8-byte safetensors header length (truncated file?)");
  const uint64_t header_len = read_u64_le(bytes.data());
  VC_CHECK(header_len <= file_size - 8, source << ": header length " << header_len << " exceeds file size "
                                               << file_size << " minus the 8-byte length prefix (truncated or "
                                               << "not a safetensors file)");
  VC_CHECK(header_len <= kMaxHeaderBytes,
           source << ": header length " << header_len << " exceeds the " << kMaxHeaderBytes << "-byte limit");
  VC_CHECK(header_len >= 2 && bytes[8] == '{',
           source << ": safetensors header must be a JSON object starting with '{' (header length " << header_len
                  << ")");

  const char* hbegin = reinterpret_cast<const char*>(bytes.data() + 8);
  ordered_json header = parse_header_json(hbegin, hbegin + header_len, source);
  VC_CHECK(header.is_object(), source << ": safetensors header is a JSON " << header.type_name()
                                      << ", expected an object");

  f.data_start_ = 8 + header_len;
  const uint64_t data_size = file_size - f.data_start_;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const ordered_json& value = it.value();
    if (name == "__metadata__") {
      VC_CHECK(value.is_object(), source << ": __metadata__ must be an object of strings, got "
                                         << json_type_name(value));
      for (auto m = value.begin(); m != value.end(); ++m) {
        VC_CHECK(m.value().is_string(), source << ": __metadata__ value for key '" << m.key()
                                               << "' must be a string, got " << json_type_name(m.value()));
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = source + ": tensor '" + name + "'";
    VC_CHECK(value.is_object(), where << ": entry must be an object, got " << json_type_name(value));
    for (const char* key : {"dtype", "shape", "data_offsets"})
      VC_CHECK(value.contains(key), where << ": entry has no '" << key << "'");

    SafetensorsEntry e;
    e.name = name;
    const ordered_json& dtype = value["dtype"];
    VC_CHECK(dtype.is_string(), where << ": dtype must be a string, got " << json_type_name(dtype));
    e.dtype = dtype.get<std::string>();
    const size_t itemsize = dtype_itemsize(e.dtype);
    VC_CHECK(itemsize != 0, where << ": unknown dtype '" << e.dtype << "'");

    const ordered_json& shape = value["shape"];
    VC_CHECK(shape.is_array(), where << ": shape must be an array, got " << json_type_name(shape));
    for (size_t i = 0; i < shape.size(); ++i) {
      const ordered_json& d = shape[i];
      VC_CHECK(d.is_number_integer(),
               where << ": shape[" << i << "] must be a non-negative integer, got " << json_type_name(d) << " "
                     << d.dump());
      VC_CHECK(d.is_number_unsigned(), where << ": shape[" << i << "] is negative (" << d.dump() << ")");
      const uint64_t dim = d.get<uint64_t>();
      VC_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
               where << ": shape[" << i << "] = " << dim << " is too large");
      e.shape.push_back(static_cast<int64_t>(dim));
    }

    const ordered_json& offsets = value["data_offsets"];
    VC_CHECK(offsets.is_array() && offsets.size() == 2,
             where << ": data_offsets must be [begin, end], got " << offsets.dump());
    for (size_t i = 0; i < 2; ++i)
      VC_CHECK(offsets[i].is_number_unsigned(),
               where << ": data_offsets must be two non-negative integers, got " << offsets.dump());
    e.begin = offsets[0].get<uint64_t>();
    e.end = offsets[1].get<uint64_t>();
    VC_CHECK(e.begin <= e.end, where << ": data_offsets [" << e.begin << ", " << e.end << "] has begin > end");
    VC_CHECK(e.end <= data_size, where << ": data_offsets end " << e.end << " is past the end of the data section ("
                                       << data_size << " bytes; file truncated?)");

    uint64_t numel = 0;
    VC_CHECK(checked_numel(e.shape, numel) && numel <= std::numeric_limits<uint64_t>::max() / itemsize,
             where << ": shape " << shape_str(e.shape) << " has too many elements");
    VC_CHECK(e.end - e.begin == numel * itemsize,
             where << ": size mismatch: data_offsets [" << e.begin << ", " << e.end << "] span " << e.end - e.begin
                   << " bytes but " << e.dtype << " " << shape_str(e.shape) << " needs " << numel * itemsize);
    f.entries_.push_back(std::move(e));
  }

  // The reference implementation requires the entries, sorted by offset, to tile
  // the data section exactly: no overlap, no gap, no trailing bytes.
  std::stable_sort(f.entries_.begin(), f.entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& e : f.entries_) {
    VC_CHECK(e.begin >= covered, source << ": tensor '" << e.name << "' data_offsets [" << e.begin << ", " << e.end
                                        << "] overlaps tensor '" << (previous ? previous->name : "") << "' ending at "
                                        << covered);
    VC_CHECK(e.begin == covered, source << ": gap of " << e.begin - covered << " unused bytes at data offset "
                                        << covered << ", before tensor '" << e.name << "'");
    covered = e.end;
    previous = &e;
  }
  VC_CHECK(covered == data_size, source << ": gap of " << data_size - covered
                                        << " unused bytes at the end of the data section (after tensor '"
                                        << (previous ? previous->name : std::string("<none>")) << "')");
  f.bytes_ = std::move(bytes);
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  for (const SafetensorsEntry& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

namespace {

float f16_bits_to_float(uint16_t h) {
  const bool negative = (h & 0x8000) != 0;
  const int exponent = (h >> 10) & 0x1F;
  const int mantissa = h & 0x3FF;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal
  } else if (exponent == 31) {
    magnitude = mantissa == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  }
  return negative ? -magnitude : magnitude;
}

float bf16_bits_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

// Rounds x to nearest-even in a binary format with `mantissa_bits` stored mantissa
// bits and exponent bias `bias`, returning the sign-less bit pattern. Working in
// double is exact for f32 inputs and rounds f64 inputs once (no double rounding).
uint16_t round_to_small_float(double x, int mantissa_bits, int bias, int max_exponent_field) {
  const double a = std::fabs(x);
  const uint32_t inf_bits = static_cast<uint32_t>(max_exponent_field) << mantissa_bits;
  if (std::isnan(x)) return static_cast<uint16_t>(inf_bits | (1u << (mantissa_bits - 1)));
  if (std::isinf(x)) return static_cast<uint16_t>(inf_bits);
  const int min_normal_exp = 1 - bias;
  if (a < std::ldexp(1.0, min_normal_exp)) {
    // Subnormal: units of 2^(min_normal_exp - mantissa_bits); rounding up to
    // 2^mantissa_bits units yields the smallest normal's bit pattern naturally.
    return static_cast<uint16_t>(std::nearbyint(std::ldexp(a, mantissa_bits - min_normal_exp)));
  }
  int e2 = 0;
  const double m = std::frexp(a, &e2);  // a = m * 2^e2, m in [0.5, 1)
  int exponent = e2 - 1;
  double q = std::nearbyint(std::ldexp(m, mantissa_bits + 1));  // in [2^mb, 2^(mb+1)]
  if (q >= std::ldexp(1.0, mantissa_bits + 1)) {
    q = std::ldexp(1.0, mantissa_bits);
    ++exponent;
  }
  const int field = exponent + bias;
  if (field >= max_exponent_field) return static_cast<uint16_t>(inf_bits);
  return static_cast<uint16_t>((static_cast<uint32_t>(field) << mantissa_bits) |
                               (static_cast<uint32_t>(q) - (1u << mantissa_bits)));
}

uint16_t double_to_f16_bits(double x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  return static_cast<uint16_t>(sign | round_to_small_float(x, 10, 15, 31));
}

uint16_t float_to_bf16_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if (std::isnan(x)) return 0x7FC0;  // torch's canonical bf16 NaN
  bits += 0x7FFF + ((bits >> 16) & 1);                                        // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}

uint16_t double_to_bf16_bits(double x) {
  if (std::isnan(x)) return 0x7FC0;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  return static_cast<uint16_t>(sign | round_to_small_float(x, 7, 127, 255));
}

template <typename T> T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

Tensor SafetensorsFile::load_f32(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  VC_CHECK(e, path_ << ": no tensor named '" << name << "'");
  Tensor t = Tensor::empty(e->shape, DType::F32);
  float* out = t.data<float>();
  const uint8_t* src = bytes_.data() + data_start_ + e->begin;
  const int64_t n = t.numel();
  if (e->dtype == "F32") {
    if (n > 0) std::memcpy(out, src, static_cast<size_t>(n) * 4);
  } else if (e->dtype == "F16") {
    for (int64_t i = 0; i < n; ++i) out[i] = f16_bits_to_float(load_le<uint16_t>(src + 2 * i));
  } else if (e->dtype == "BF16") {
    for (int64_t i = 0; i < n; ++i) out[i] = bf16_bits_to_float(load_le<uint16_t>(src + 2 * i));
  } else if (e->dtype == "F64") {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<double>(src + 8 * i));
  } else {
    VC_FAIL(path_ << ": tensor '" << name << "' has dtype " << e->dtype
                  << "; only F32, F16, BF16 and F64 convert to f32");
  }
  return t;
}

std::vector<uint8_t> SafetensorsFile::raw_bytes(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  VC_CHECK(e, path_ << ": no tensor named '" << name << "'");
  const uint8_t* src = bytes_.data() + data_start_;
  return std::vector<uint8_t>(src + e->begin, src + e->end);
}

std::vector<uint8_t> encode_f32(const Tensor& device_or_host, const std::string& dtype) {
  VC_CHECK(device_or_host.defined(), "encode_f32: tensor is undefined");
  const Tensor t = device_or_host.to(Device::CPU);  // weights trained on the GPU are written from a host copy
  VC_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64,
           "encode_f32: tensor " << t.describe() << " must be f32 or f64");
  const int64_t n = t.numel();
  const bool from_f64 = t.dtype() == DType::F64;
  const float* xf = from_f64 ? nullptr : t.data<float>();
  const double* xd = from_f64 ? t.data<double>() : nullptr;
  std::vector<uint8_t> out;
  auto store = [&out](int64_t i, const void* v, size_t size) { std::memcpy(out.data() + i * size, v, size); };
  if (dtype == "F32") {
    out.resize(static_cast<size_t>(n) * 4);
    for (int64_t i = 0; i < n; ++i) {
      const float v = from_f64 ? static_cast<float>(xd[i]) : xf[i];
      store(i, &v, 4);
    }
  } else if (dtype == "F64") {
    out.resize(static_cast<size_t>(n) * 8);
    for (int64_t i = 0; i < n; ++i) {
      const double v = from_f64 ? xd[i] : static_cast<double>(xf[i]);
      store(i, &v, 8);
    }
  } else if (dtype == "F16") {
    out.resize(static_cast<size_t>(n) * 2);
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t v = double_to_f16_bits(from_f64 ? xd[i] : static_cast<double>(xf[i]));
      store(i, &v, 2);
    }
  } else if (dtype == "BF16") {
    out.resize(static_cast<size_t>(n) * 2);
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t v = from_f64 ? double_to_bf16_bits(xd[i]) : float_to_bf16_bits(xf[i]);
      store(i, &v, 2);
    }
  } else {
    VC_FAIL("encode_f32: cannot encode to dtype '" << dtype << "' (expected F32, F16, BF16 or F64)");
  }
  return out;
}

namespace {

std::string errno_text() { return std::strerror(errno); }

// Writes everything or reports errno; fwrite may write partially.
bool write_all(std::FILE* f, const void* data, size_t size) {
  return size == 0 || std::fwrite(data, 1, size, f) == size;
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<SafetensorsWriteEntry>& entries,
                       const std::map<std::string, std::string>& metadata) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const SafetensorsWriteEntry& e : entries) {
    const std::string where = path + ": tensor '" + e.name + "'";
    VC_CHECK(!e.name.empty(), path << ": a tensor has an empty name");
    VC_CHECK(e.name != "__metadata__", where << ": the name is reserved for metadata");
    VC_CHECK(names.insert(e.name).second, where << ": name appears more than once");
    const size_t itemsize = dtype_itemsize(e.dtype);
    VC_CHECK(itemsize != 0, where << ": unknown dtype '" << e.dtype << "'");
    uint64_t numel = 0;
    for (int64_t d : e.shape) VC_CHECK(d >= 0, where << ": negative dimension in shape " << shape_str(e.shape));
    VC_CHECK(checked_numel(e.shape, numel), where << ": shape " << shape_str(e.shape) << " is too large");
    VC_CHECK(e.bytes.size() == numel * itemsize, where << ": " << e.bytes.size() << " bytes given but " << e.dtype
                                                       << " " << shape_str(e.shape) << " needs "
                                                       << numel * itemsize);
    ordered_json entry = ordered_json::object();
    entry["dtype"] = e.dtype;
    entry["shape"] = e.shape;
    entry["data_offsets"] = ordered_json::array({offset, offset + e.bytes.size()});
    header[e.name] = std::move(entry);
    offset += e.bytes.size();
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  uint8_t length_prefix[8];
  for (int i = 0; i < 8; ++i) length_prefix[i] = static_cast<uint8_t>(static_cast<uint64_t>(header_text.size()) >> (8 * i));

  const std::string tmp_path = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp_path.c_str(), "wb");
  VC_CHECK(f, "cannot write " << path << ": opening temporary file " << tmp_path << " failed: " << errno_text());
  auto fail = [&](const char* stage) {
    const std::string reason = errno_text();
    if (f) std::fclose(f);
    std::remove(tmp_path.c_str());
    VC_FAIL("cannot write " << path << ": " << stage << " failed: " << reason);
  };
  if (!write_all(f, length_prefix, 8) || !write_all(f, header_text.data(), header_text.size())) fail("writing header");
  for (const SafetensorsWriteEntry& e : entries)
    if (!write_all(f, e.bytes.data(), e.bytes.size())) fail(("writing tensor '" + e.name + "'").c_str());
  if (std::fflush(f) != 0) fail("flushing");
  if (::fsync(::fileno(f)) != 0) fail("fsync");
  const int close_status = std::fclose(f);
  f = nullptr;
  if (close_status != 0) fail("closing");
  if (std::rename(tmp_path.c_str(), path.c_str()) != 0) fail(("renaming " + tmp_path).c_str());

  // Make the rename itself durable. Best effort: some file systems refuse to
  // fsync directories, and the data is already safely in place under its name.
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace vitscuda::io
