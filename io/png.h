// Minimal PNG encoder: 8-bit grayscale or RGB, no interlacing, every row with filter type 0,
// pixel data in zlib "stored" (uncompressed) deflate blocks, so no compression library is needed.
// Chunk CRC32 and the zlib Adler-32 trailer are computed, so any PNG reader accepts the files.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vitscuda::io {

// 8-bit pixels, row-major from the top row down, `channels` interleaved samples per pixel
// (1 = grayscale, 3 = RGB).
struct RasterImage {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // height * width * channels
};

std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height, int channels);
std::vector<uint8_t> encode_png(const RasterImage& image);
// Writes encode_png(image) to `path`; throws naming the path and errno text on failure.
void write_png(const std::string& path, const RasterImage& image);

}  // namespace vitscuda::io
