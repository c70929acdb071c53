// The .vcds dataset cache: CRC-32 against published check values, write/read round trip, and
// every kind of damage (flipped byte in an item, in the header, in the index; truncation;
// garbage) reported with the file and the item named.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "common/error.h"
#include "io/crc32.h"
#include "io/dataset.h"
#include "support/test_support.h"

using namespace vitscuda;
namespace fs = std::filesystem;

namespace {

std::vector<io::DatasetItem> make_items() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<io::DatasetItem> items;
  // Lengths chosen so ids need padding (1, 2, 3, 5 bytes) and sample counts are odd and even.
  const std::vector<std::string> ids = {"a", "bb", "ccc", "utt-5"};
  for (size_t k = 0; k < ids.size(); ++k) {
    io::DatasetItem it;
    it.id = ids[k];
    it.speaker = static_cast<int32_t>(k) - 1;
    for (size_t t = 0; t < 3 + 2 * k; ++t) it.ids.push_back(static_cast<int32_t>(rng() % 40));
    it.samples.resize(1000 + 333 * k);
    for (float& s : it.samples) s = u(rng);
    items.push_back(it);
  }
  items.push_back({"empty-audio", 0, {1}, {}});
  return items;
}

std::string write_cache(const std::string& path, const std::vector<io::DatasetItem>& items, int rate = 16000,
                        uint64_t tokenizer_hash = 0x1234abcd5678ef90ull) {
  io::DatasetWriter w(path, rate, tokenizer_hash);
  for (const auto& it : items) w.add(it);
  w.finish();
  return path;
}

std::string open_error(const std::string& path, io::DatasetVerify verify = io::DatasetVerify::All) {
  try {
    io::DatasetReader::open(path, verify);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

uint64_t u64_at(const std::vector<char>& b, size_t offset) {
  uint64_t v;
  std::memcpy(&v, b.data() + offset, 8);
  return v;
}

}  // namespace

TEST(Crc32, MatchesPublishedCheckValues) {
  // The CRC-32/ISO-HDLC check value for "123456789", and zlib's crc32 of a pangram.
  EXPECT_EQ(io::crc32("123456789", 9), 0xCBF43926u);
  const std::string fox = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(io::crc32(fox.data(), fox.size()), 0x414FA339u);
  EXPECT_EQ(io::crc32("", 0), 0u);
  // Chaining over any split equals one pass (exercises the 8-byte and the byte-wise paths).
  for (size_t split = 0; split <= fox.size(); ++split)
    EXPECT_EQ(io::crc32_update(io::crc32(fox.data(), split), fox.data() + split, fox.size() - split), 0x414FA339u) << split;
}

TEST(Dataset, RoundTripIsExact) {
  const std::string dir = vitscuda::testing::temp_dir("dataset_roundtrip");
  const auto items = make_items();
  const std::string path = write_cache(dir + "/train.vcds", items, 22050);
  // Atomic: no temporary file left behind.
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);

  for (auto verify : {io::DatasetVerify::All, io::DatasetVerify::HeaderOnly}) {
    const io::DatasetReader r = io::DatasetReader::open(path, verify);
    ASSERT_EQ(r.size(), items.size());
    EXPECT_EQ(r.sample_rate(), 22050);
    EXPECT_EQ(r.tokenizer_hash(), 0x1234abcd5678ef90ull);
    size_t total = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const io::DatasetItem got = r.item(i);
      EXPECT_EQ(got.id, items[i].id);
      EXPECT_EQ(got.speaker, items[i].speaker);
      EXPECT_EQ(got.ids, items[i].ids);
      // Bit-exact: the cache stores float32 as is.
      ASSERT_EQ(got.samples.size(), items[i].samples.size());
      // (memcmp must not be given the null data() of an empty vector, even for 0 bytes.)
      if (!got.samples.empty())
        EXPECT_EQ(std::memcmp(got.samples.data(), items[i].samples.data(), 4 * got.samples.size()), 0) << i;
      EXPECT_EQ(r.num_samples(i), items[i].samples.size());
      EXPECT_EQ(r.num_ids(i), items[i].ids.size());
      const io::DatasetItemView v = r.view(i);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(v.samples) % alignof(float), 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(v.ids) % alignof(int32_t), 0u);
      total += items[i].samples.size();
    }
    EXPECT_DOUBLE_EQ(r.total_seconds(), static_cast<double>(total) / 22050);
    EXPECT_THROW(r.item(items.size()), Error);
  }
}

TEST(Dataset, EmptyCacheIsValid) {
  const std::string dir = vitscuda::testing::temp_dir("dataset_empty");
  const std::string path = write_cache(dir + "/eval.vcds", {});
  const io::DatasetReader r = io::DatasetReader::open(path);
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(r.total_seconds(), 0.0);
}

TEST(Dataset, UnfinishedWriterLeavesNothing) {
  const std::string dir = vitscuda::testing::temp_dir("dataset_unfinished");
  {
    io::DatasetWriter w(dir + "/train.vcds", 16000);
    w.add(make_items()[0]);
  }
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(Dataset, CorruptItemByteNamesTheItem) {
  const std::string dir = vitscuda::testing::temp_dir("dataset_corrupt_item");
  const auto items = make_items();
  const std::string path = write_cache(dir + "/train.vcds", items);
  const std::vector<char> good = read_bytes(path);
  const uint64_t index_offset = u64_at(good, 24);
  // Item 2's offset from the index; flip one bit in the middle of its samples.
  const uint64_t item2 = u64_at(good, index_offset + 2 * 32);
  const uint64_t item2_size = u64_at(good, index_offset + 2 * 32 + 8);
  std::vector<char> bad = good;
  bad[item2 + item2_size - 100] ^= 0x10;
  write_bytes(path, bad);
  const std::string msg = open_error(path);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("item 2 (id \"ccc\")"), std::string::npos) << msg;
  EXPECT_NE(msg.find("corrupt"), std::string::npos) << msg;
  // Checking CRCs on access instead: open succeeds, the damaged item throws, the others read.
  const io::DatasetReader lazy = io::DatasetReader::open(path, io::DatasetVerify::HeaderOnly);
  EXPECT_EQ(lazy.item(1).id, "bb");
  try {
    lazy.item(2);
    ADD_FAILURE() << "corrupt item 2 was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("item 2"), std::string::npos) << e.what();
  }
}

TEST(Dataset, CorruptLengthFieldIsCaughtBeforeAnyRead) {
  const std::string dir = vitscuda::testing::temp_dir("dataset_corrupt_length");
  const std::string path = write_cache(dir + "/train.vcds", make_items());
  std::vector<char> bytes = read_bytes(path);
  const uint64_t index_offset = u64_at(bytes, 24);
  const uint64_t item1 = u64_at(bytes, index_offset + 32);
  // num_samples of item 1 set huge: must be refused from the structure, not read past the end.
  const uint64_t huge = uint64_t(1) << 40;
  std::memcpy(bytes.data() + item1 + 16, &huge, 8);
  write_bytes(path, bytes);
  for (auto verify : {io::DatasetVerify::All, io::DatasetVerify::HeaderOnly}) {
    const std::string msg = open_error(path, verify);
    EXPECT_NE(msg.find("item 1"), std::string::npos) << msg;
  }
}

TEST(Dataset, CorruptHeaderOrIndexIsReported) {
  const std::string dir = vitscuda::testing::temp_dir("dataset_corrupt_header");
  const std::string path = write_cache(dir + "/train.vcds", make_items());
  const std::vector<char> good = read_bytes(path);

  std::vector<char> bad = good;
  bad[8] ^= 1;  // sample rate
  write_bytes(path, bad);
  std::string msg = open_error(path);
  EXPECT_NE(msg.find("header is corrupt"), std::string::npos) << msg;

  bad = good;
  bad[u64_at(good, 24) + 3 * 32 + 4] ^= 1;  // item 3's offset in the index
  write_bytes(path, bad);
  msg = open_error(path);
  EXPECT_NE(msg.find("index is corrupt"), std::string::npos) << msg;

  bad = good;
  bad[0] = 'X';
  write_bytes(path, bad);
  msg = open_error(path);
  EXPECT_NE(msg.find("not a vitscuda dataset cache"), std::string::npos) << msg;
}

TEST(Dataset, TruncatedOrExtendedFileIsReported) {
  const std::string dir = vitscuda::testing::temp_dir("dataset_truncated");
  const std::string path = write_cache(dir + "/train.vcds", make_items());
  const std::vector<char> good = read_bytes(path);
  for (size_t keep : {good.size() - 1, good.size() / 2, size_t(70), size_t(10), size_t(0)}) {
    write_bytes(path, std::vector<char>(good.begin(), good.begin() + static_cast<long>(keep)));
    const std::string msg = open_error(path);
    EXPECT_NE(msg.find(path), std::string::npos) << keep << ": " << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << keep << ": " << msg;
  }
  std::vector<char> longer = good;
  longer.push_back(0);
  write_bytes(path, longer);
  EXPECT_NE(open_error(path).find("too long"), std::string::npos);
  EXPECT_NE(open_error(dir + "/absent.vcds").find("absent.vcds"), std::string::npos);
}

TEST(Dataset, RandomByteFlipsNeverCrashAndAreAlwaysCaught) {
  // Every single-byte change outside the zero padding must be detected: each byte is covered
  // by the header, index or an item CRC, or by the file-size field.
  const std::string dir = vitscuda::testing::temp_dir("dataset_fuzz");
  std::vector<io::DatasetItem> items = make_items();
  for (auto& it : items) it.samples.resize(std::min<size_t>(it.samples.size(), 50));
  const std::string path = write_cache(dir + "/train.vcds", items);
  const std::vector<char> good = read_bytes(path);
  std::mt19937 rng(3);
  int detected = 0, unchanged = 0;
  for (size_t pos = 0; pos < good.size(); ++pos) {
    std::vector<char> bad = good;
    bad[pos] = static_cast<char>(bad[pos] ^ (1 + rng() % 255));
    write_bytes(path, bad);
    if (!open_error(path).empty())
      ++detected;
    else
      ++unchanged;
  }
  // Padding bytes between items (zeros outside every CRC) are the only blind spots.
  size_t padding = 0;
  const uint64_t index_offset = u64_at(good, 24);
  uint64_t end = 64;
  for (size_t i = 0; i < items.size(); ++i) {
    const uint64_t off = u64_at(good, index_offset + i * 32);
    padding += off - end;
    end = off + u64_at(good, index_offset + i * 32 + 8);
  }
  padding += index_offset - end;
  EXPECT_GT(padding, 0u);
  EXPECT_EQ(static_cast<size_t>(unchanged), padding);
  EXPECT_EQ(static_cast<size_t>(detected), good.size() - padding);
  // How many damaged files were tried, for scripts/reliability.sh.
  ::testing::Test::RecordProperty("cases", static_cast<int>(good.size()));
}

// The file changing under an open reader (a running training job): in-place damage is caught on
// the next read whatever the verify mode, and a file cut short gives an error, not SIGBUS.
TEST(Dataset, DamageAfterOpenIsCaughtOnEveryReadNeverACrash) {
  const std::string dir = vitscuda::testing::temp_dir("dataset_changed_under_reader");
  const auto items = make_items();
  const std::string path = write_cache(dir + "/train.vcds", items);
  const std::vector<char> good = read_bytes(path);
  const uint64_t index_offset = u64_at(good, 24);
  const uint64_t item1 = u64_at(good, index_offset + 32);
  const uint64_t item1_size = u64_at(good, index_offset + 32 + 8);
  for (io::DatasetVerify verify : {io::DatasetVerify::All, io::DatasetVerify::HeaderOnly}) {
    write_bytes(path, good);
    const io::DatasetReader r = io::DatasetReader::open(path, verify);
    EXPECT_EQ(r.item(1).samples, items[1].samples);
    {
      // Overwrite one sample byte in place (same inode, as another writer would).
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(item1 + item1_size - 8));
      f.put(static_cast<char>(good[item1 + item1_size - 8] ^ 0x01));
    }
    try {
      r.item(1);
      ADD_FAILURE() << "an item damaged after open was read";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path + ": item 1 (id \"bb\") is corrupt"), std::string::npos) << e.what();
    }
    EXPECT_EQ(r.item(0).samples, items[0].samples) << "undamaged items still read";
    // Cut the file in place just inside item 1: item 0 still reads, items 1.. report the short read.
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(item1 + 10)), 0);
    EXPECT_EQ(r.item(0).samples, items[0].samples);
    for (size_t i = 1; i < items.size(); ++i) {
      try {
        r.item(i);
        ADD_FAILURE() << "item " << i << " past the new end of the file was read";
      } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find(path + ": item " + std::to_string(i) + ": only "), std::string::npos) << m;
        EXPECT_NE(m.find("shorter than when it was opened"), std::string::npos) << m;
      }
    }
  }
}

TEST(Dataset, FromBytesReadsWhatOpenReadsAndOwnsTheBytes) {
  const std::string dir = vitscuda::testing::temp_dir("dataset_from_bytes");
  const std::vector<io::DatasetItem> items = make_items();
  const std::string path = write_cache(dir + "/train.vcds", items);
  const std::vector<char> file = read_bytes(path);
  std::optional<io::DatasetReader> r;
  {
    // The reader keeps its own copy: the caller's buffer may go away.
    std::vector<unsigned char> bytes(file.begin(), file.end());
    r.emplace(io::DatasetReader::from_bytes(std::move(bytes), "memory:train"));
  }
  const io::DatasetReader moved = std::move(*r);
  ASSERT_EQ(moved.size(), items.size());
  EXPECT_EQ(moved.sample_rate(), 16000);
  EXPECT_EQ(moved.tokenizer_hash(), 0x1234abcd5678ef90ull);
  for (size_t i = 0; i < items.size(); ++i) {
    const io::DatasetItem got = moved.item(i);
    EXPECT_EQ(got.id, items[i].id);
    EXPECT_EQ(got.speaker, items[i].speaker);
    EXPECT_EQ(got.ids, items[i].ids);
    EXPECT_EQ(got.samples, items[i].samples);
  }

  std::vector<unsigned char> corrupt(file.begin(), file.end());
  corrupt[20] ^= 1;  // item count, covered by the header CRC
  try {
    io::DatasetReader::from_bytes(corrupt, "memory:corrupt");
    FAIL() << "a corrupt header was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("memory:corrupt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("header is corrupt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(io::DatasetReader::from_bytes(std::vector<unsigned char>(63, 0), "memory:short"), Error);
}
