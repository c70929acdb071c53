#include "io/unicode_text.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "common/error.h"

namespace vitscuda::io {

namespace {

struct LowercaseRun {
  char32_t first, last;
  int step;
  int delta;
};
struct LowercaseExpansion {
  char32_t code_point;
  char32_t lower[3];
  int count;
};
#include "io/unicode_tables.inc"

}  // namespace

std::u32string decode_utf8(const std::string& s, const std::string& what) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int extra = 0;
    char32_t cp = 0;
    if (b0 < 0x80) {
      cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      cp = b0 & 0x1F;
      extra = 1;
    } else if ((b0 & 0xF0) == 0xE0) {
      cp = b0 & 0x0F;
      extra = 2;
    } else if ((b0 & 0xF8) == 0xF0) {
      cp = b0 & 0x07;
      extra = 3;
    } else {
      VC_FAIL(what << " is not valid UTF-8 (byte 0x" << std::hex << int(b0) << std::dec << " at offset " << i << ")");
    }
    VC_CHECK(i + static_cast<size_t>(extra) < s.size(),
             what << " is not valid UTF-8 (truncated sequence at offset " << i << ")");
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      VC_CHECK((b & 0xC0) == 0x80, what << " is not valid UTF-8 (bad continuation byte at offset " << i + k << ")");
      cp = (cp << 6) | (b & 0x3F);
    }
    static const char32_t min_for_length[4] = {0, 0x80, 0x800, 0x10000};
    VC_CHECK(cp >= min_for_length[extra] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF),
             what << " is not valid UTF-8 (overlong or out-of-range sequence at offset " << i << ")");
    out.push_back(cp);
    i += static_cast<size_t>(extra) + 1;
  }
  return out;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string to_utf8(char32_t cp) {
  std::string s;
  append_utf8(cp, s);
  return s;
}

std::string to_utf8(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(c, out);
  return out;
}

void append_python_lower(char32_t cp, std::u32string& out) {
  if (cp < 0x80) {
    out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  for (const LowercaseExpansion& e : kLowercaseExpansions) {
    if (e.code_point == cp) {
      out.append(e.lower, static_cast<size_t>(e.count));
      return;
    }
  }
  for (const LowercaseRun& r : kLowercaseRuns) {
    if (cp >= r.first && cp <= r.last && (cp - r.first) % static_cast<char32_t>(r.step) == 0) {
      out.push_back(static_cast<char32_t>(static_cast<int64_t>(cp) + r.delta));
      return;
    }
  }
  out.push_back(cp);
}

bool is_python_space(char32_t cp) {
  return std::find(std::begin(kWhitespace), std::end(kWhitespace), cp) != std::end(kWhitespace);
}

std::u32string python_strip(const std::u32string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_python_space(s[b])) ++b;
  while (e > b && is_python_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

}  // namespace vitscuda::io
