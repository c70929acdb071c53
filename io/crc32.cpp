#include "io/crc32.h"

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace vitscuda::io {
namespace {

// Slicing-by-8 tables for a reflected CRC-32 polynomial: tables[0] is the classic byte-at-a-time
// table; tables[k][b] is the CRC of byte b followed by k zero bytes, so eight input bytes are folded
// in with eight independent lookups (about 3x faster than one byte per step).
using CrcTables = std::array<std::array<uint32_t, 256>, 8>;

constexpr CrcTables make_tables(uint32_t reflected_polynomial) {
  CrcTables tables{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ reflected_polynomial : crc >> 1;
    tables[0][byte] = crc;
  }
  for (int k = 1; k < 8; ++k)
    for (uint32_t byte = 0; byte < 256; ++byte)
      tables[k][byte] = (tables[k - 1][byte] >> 8) ^ tables[0][tables[k - 1][byte] & 0xFFu];
  return tables;
}

constexpr CrcTables kCrc32Tables = make_tables(0xEDB88320u);   // IEEE 802.3
constexpr CrcTables kCrc32cTables = make_tables(0x82F63B78u);  // Castagnoli

uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

uint32_t reflected_crc_update(const CrcTables& t, uint32_t previous, const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint32_t crc = ~previous;  // pre- and post-conditioning with all ones
  while (size >= 8) {
    const uint32_t lo = load_le32(bytes) ^ crc;
    const uint32_t hi = load_le32(bytes + 4);
    crc = t[7][lo & 0xFFu] ^ t[6][(lo >> 8) & 0xFFu] ^ t[5][(lo >> 16) & 0xFFu] ^ t[4][lo >> 24] ^
          t[3][hi & 0xFFu] ^ t[2][(hi >> 8) & 0xFFu] ^ t[1][(hi >> 16) & 0xFFu] ^ t[0][hi >> 24];
    bytes += 8;
    size -= 8;
  }
  for (size_t i = 0; i < size; ++i) crc = t[0][(crc ^ bytes[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

}  // namespace

uint32_t crc32_update(uint32_t previous, const void* data, size_t size) {
  return reflected_crc_update(kCrc32Tables, previous, data, size);
}
uint32_t crc32c_update(uint32_t previous, const void* data, size_t size) {
  return reflected_crc_update(kCrc32cTables, previous, data, size);
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
