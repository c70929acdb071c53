// UTF-8 <-> code points and the few Python str operations the text front-ends reproduce
// (str.lower() one character at a time, str.isspace(), str.strip()), as Python 3.11 does them.
#pragma once
#include <string>

namespace vitscuda::io {

// Throws vitscuda::Error naming `what` and the byte offset for invalid UTF-8.
std::u32string decode_utf8(const std::string& s, const std::string& what);
void append_utf8(char32_t cp, std::string& out);
std::string to_utf8(char32_t cp);
std::string to_utf8(const std::u32string& s);
// Python's chr(cp).lower(), appended (some characters lowercase to several).
void append_python_lower(char32_t cp, std::u32string& out);
// Python's str.isspace() for one character (also what the `re` module's \s matches).
bool is_python_space(char32_t cp);
// Python's str.strip() without arguments.
std::u32string python_strip(const std::u32string& s);

}  // namespace vitscuda::io
