#include "io/crc32.h"

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/error.h"

namespace vitscuda::io {
namespace {

// Byte-at-a-time table for a reflected CRC-32 polynomial.
using CrcTable = std::array<uint32_t, 256>;

constexpr CrcTable make_table(uint32_t reflected_polynomial) {
  CrcTable table{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ reflected_polynomial : crc >> 1;
    table[byte] = crc;
  }
  return table;
}

constexpr CrcTable kCrc32Table = make_table(0xEDB88320u);   // IEEE 802.3
constexpr CrcTable kCrc32cTable = make_table(0x82F63B78u);  // Castagnoli

uint32_t reflected_crc_update(const CrcTable& table, uint32_t previous, const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint32_t crc = ~previous;  // pre- and post-conditioning with all ones
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ bytes[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

}  // namespace

uint32_t crc32_update(uint32_t previous, const void* data, size_t size) {
  return reflected_crc_update(kCrc32Table, previous, data, size);
}
uint32_t crc32c_update(uint32_t previous, const void* data, size_t size) {
  return reflected_crc_update(kCrc32cTable, previous, data, size);
}
uint32_t crc32(const void* data, size_t size) { return crc32_update(0, data, size); }
uint32_t crc32c(const void* data, size_t size) { return crc32c_update(0, data, size); }

uint32_t adler32_update(uint32_t previous, const void* data, size_t size) {
  constexpr uint32_t kModulus = 65521;
  // 5552 is the largest block for which the sums cannot overflow 32 bits before the modulo (zlib's NMAX).
  constexpr size_t kBlock = 5552;
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint32_t a = previous & 0xFFFFu;
  uint32_t b = previous >> 16;
  while (size > 0) {
    const size_t n = size < kBlock ? size : kBlock;
    for (size_t i = 0; i < n; ++i) {
      a += bytes[i];
      b += a;
    }
    a %= kModulus;
    b %= kModulus;
    bytes += n;
    size -= n;
  }
  return (b << 16) | a;
}
uint32_t adler32(const void* data, size_t size) { return adler32_update(1, data, size); }

uint32_t crc32_file(const std::string& path, uint64_t* size_out) {
  FILE* file = std::fopen(path.c_str(), "rb");
  VC_CHECK(file != nullptr, "cannot open '" << path << "' to checksum it: " << std::strerror(errno));
  std::vector<uint8_t> buffer(1 << 20);
  uint32_t crc = 0;
  uint64_t total = 0;
  for (;;) {
    const size_t n = std::fread(buffer.data(), 1, buffer.size(), file);
    crc = crc32_update(crc, buffer.data(), n);
    total += n;
    if (n < buffer.size()) break;
  }
  const bool failed = std::ferror(file) != 0;
  const int read_errno = errno;
  std::fclose(file);
  VC_CHECK(!failed, "read error while checksumming '" << path << "': " << std::strerror(read_errno));
  if (size_out) *size_out = total;
  return crc;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

}  // namespace vitscuda::io
