#include "io/png.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "io/crc32.h"

namespace vitscuda::io {
namespace {

void put_u32_be(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

// length, type, data, CRC32 over type and data.
void put_chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  const size_t type_at = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_u32_be(out, crc32(out.data() + type_at, 4 + data.size()));
}

// zlib stream (RFC 1950) holding `raw` in stored deflate blocks (RFC 1951 section 3.2.4).
std::vector<uint8_t> zlib_stored(const std::vector<uint8_t>& raw) {
  constexpr size_t kMaxStored = 65535;  // LEN is 16 bits
  std::vector<uint8_t> out;
  out.reserve(raw.size() + raw.size() / kMaxStored * 5 + 16);
  // CMF 0x78: deflate, 32 KiB window; FLG 0x01: no dictionary, fastest level, (CMF*256+FLG) % 31 == 0.
  out.push_back(0x78);
  out.push_back(0x01);
  size_t at = 0;
  do {
    const size_t n = std::min(kMaxStored, raw.size() - at);
    const bool final_block = at + n == raw.size();
    out.push_back(final_block ? 1 : 0);  // BFINAL, BTYPE = 00; the rest of the byte is padding
    out.push_back(static_cast<uint8_t>(n & 0xFF));
    out.push_back(static_cast<uint8_t>(n >> 8));
    out.push_back(static_cast<uint8_t>(~n & 0xFF));
    out.push_back(static_cast<uint8_t>((~n >> 8) & 0xFF));
    out.insert(out.end(), raw.begin() + static_cast<std::ptrdiff_t>(at), raw.begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
  } while (at < raw.size());
  put_u32_be(out, adler32(raw.data(), raw.size()));
  return out;
}

}  // namespace

std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height, int channels) {
  VC_CHECK(width > 0 && height > 0, "PNG: image size must be positive, got " << width << "x" << height);
  VC_CHECK(channels == 1 || channels == 3, "PNG: channels must be 1 (grayscale) or 3 (RGB), got " << channels);
  VC_CHECK(pixels != nullptr, "PNG: no pixel data");
  const size_t row_bytes = static_cast<size_t>(width) * channels;
  // Every row is prefixed with its filter type (0: none).
  std::vector<uint8_t> raw;
  raw.reserve((row_bytes + 1) * height);
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), pixels + y * row_bytes, pixels + (y + 1) * row_bytes);
  }

  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> header;
  put_u32_be(header, static_cast<uint32_t>(width));
  put_u32_be(header, static_cast<uint32_t>(height));
  header.push_back(8);                         // bit depth
  header.push_back(channels == 1 ? 0 : 2);     // colour type: grayscale / truecolour
  header.push_back(0);                         // compression: deflate
  header.push_back(0);                         // filter method 0
  header.push_back(0);                         // no interlace
  put_chunk(png, "IHDR", header);
  put_chunk(png, "IDAT", zlib_stored(raw));
  put_chunk(png, "IEND", {});
  return png;
}

std::vector<uint8_t> encode_png(const RasterImage& image) {
  VC_CHECK(image.pixels.size() == static_cast<size_t>(image.width) * image.height * image.channels,
           "PNG: pixel buffer has " << image.pixels.size() << " bytes, expected " << image.width << "x" << image.height
                                    << "x" << image.channels);
  return encode_png(image.pixels.data(), image.width, image.height, image.channels);
}

void write_png(const std::string& path, const RasterImage& image) {
  const std::vector<uint8_t> bytes = encode_png(image);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  VC_CHECK(f, "cannot open '" << path << "' for writing: " << std::strerror(errno));
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const int write_errno = errno;
  const bool closed = std::fclose(f) == 0;
  VC_CHECK(written == bytes.size() && closed, "cannot write '" << path << "': " << std::strerror(written == bytes.size() ? errno : write_errno));
}

}  // namespace vitscuda::io
