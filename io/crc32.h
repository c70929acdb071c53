// CRC checksums used by the persistence layer.
//
// crc32:  IEEE 802.3 polynomial (reflected 0xEDB88320), as used by zlib, PNG and our checkpoint MANIFEST.
// crc32c: Castagnoli polynomial (reflected 0x82F63B78), as used by TFRecord (TensorBoard event files).
// adler32: zlib stream trailer checksum.
//
// The CRCs are table-driven (slicing-by-8, about 2 GB/s on one core). All three detect accidental
// corruption (bit flips, truncation); they are NOT cryptographic and do not protect against
// deliberate tampering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace vitscuda::io {

// One-shot checksums.
uint32_t crc32(const void* data, size_t size);
uint32_t crc32c(const void* data, size_t size);
uint32_t adler32(const void* data, size_t size);

// Incremental forms: start from `previous` (the value returned for the bytes seen so far; 0 for none)
// and fold in `size` more bytes. crc32_update(crc32_update(0, a), b) == crc32(a ++ b).
uint32_t crc32_update(uint32_t previous, const void* data, size_t size);
uint32_t crc32c_update(uint32_t previous, const void* data, size_t size);
// Adler-32 starts at 1 for the empty input, so pass 1 (not 0) as the initial value.
uint32_t adler32_update(uint32_t previous, const void* data, size_t size);

// CRC32 of a whole file, streamed in blocks; throws with the path and errno text if it cannot be read.
// If `size_out` is non-null it receives the number of bytes read.
uint32_t crc32_file(const std::string& path, uint64_t* size_out = nullptr);

// TFRecord's masked CRC32C: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t size);

}  // namespace vitscuda::io
