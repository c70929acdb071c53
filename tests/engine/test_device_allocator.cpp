// The parts of the device allocator that need no device: memory-size parsing and formatting.
#include <gtest/gtest.h>

#include "common/error.h"
#include "engine/device_allocator.h"

using namespace vitscuda;

TEST(MemorySize, ParsesUnitsAndRejectsJunk) {
  EXPECT_EQ(parse_memory_size("1024"), 1024u);
  EXPECT_EQ(parse_memory_size("512M"), size_t(512) << 20);
  EXPECT_EQ(parse_memory_size("8GB"), size_t(8) << 30);
  EXPECT_EQ(parse_memory_size("7.5G"), size_t(15) << 29);
  EXPECT_EQ(parse_memory_size("64k"), size_t(64) << 10);
  for (const char* bad : {"", "G", "7.5X", "-1G", "abc", "0"}) {
    try {
      parse_memory_size(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("memory size"), std::string::npos) << e.what();
    }
  }
}

TEST(MemorySize, FormatsReadably) {
  EXPECT_EQ(format_bytes(100), "100 bytes");
  EXPECT_EQ(format_bytes(size_t(3) << 20), "3.0 MiB");
  EXPECT_EQ(format_bytes(size_t(15) << 29), "7.50 GiB");
}
