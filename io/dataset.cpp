#include "io/dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "common/error.h"
#include "io/crc32.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .vcds cache is little-endian and read in place");

namespace vitscuda::io {

namespace {

constexpr char kMagic[4] = {'V', 'C', 'D', 'S'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kSampleFormatFloat32 = 1;
constexpr size_t kHeaderSize = 64;
constexpr size_t kHeaderCrcOffset = 60;
constexpr size_t kIndexEntrySize = 32;
constexpr size_t kItemHeaderSize = 24;
constexpr size_t kWriteBuffer = size_t(1) << 20;

template <typename T>
void put(unsigned char* dst, size_t offset, T value) {
  std::memcpy(dst + offset, &value, sizeof(T));
}

template <typename T>
T get(const unsigned char* src, size_t offset) {
  T value;
  std::memcpy(&value, src + offset, sizeof(T));
  return value;
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

std::string hex32(uint32_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(8) << std::setfill('0') << v;
  return os.str();
}

// An id taken from a possibly damaged file, safe to print.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) ? '?' : c;
  return out;
}

}  // namespace

// ---------------------------------------------------------------- writer

DatasetWriter::DatasetWriter(const std::string& path, int sample_rate, uint64_t tokenizer_hash)
    : path_(path),
      tmp_path_(path + ".tmp-" + std::to_string(::getpid())),
      sample_rate_(sample_rate),
      tokenizer_hash_(tokenizer_hash) {
  VC_CHECK(sample_rate > 0, "dataset cache " << path << ": invalid sample rate " << sample_rate);
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  VC_CHECK(fd_ >= 0, "cannot create " << tmp_path_ << ": " << std::strerror(errno));
  buffer_.reserve(kWriteBuffer);
  // The header is written last, once the index is known; reserve its place.
  const std::array<unsigned char, kHeaderSize> zeros{};
  write_bytes(zeros.data(), zeros.size());
}

DatasetWriter::~DatasetWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(tmp_path_.c_str());
}

void DatasetWriter::fail_and_clean(const std::string& message) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_path_.c_str());
  VC_FAIL(message);
}

void DatasetWriter::write_bytes(const void* data, size_t size) {
  VC_CHECK(fd_ >= 0, "dataset cache " << path_ << " is not open for writing");
  const char* p = static_cast<const char*>(data);
  auto flush = [&](const char* bytes, size_t n) {
    size_t done = 0;
    while (done < n) {
      const ssize_t w = ::write(fd_, bytes + done, n - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail_and_clean("writing " + tmp_path_ + " failed: " + std::strerror(errno));
      }
      done += static_cast<size_t>(w);
    }
  };
  if (buffer_.size() + size > kWriteBuffer) {
    flush(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  if (size >= kWriteBuffer)
    flush(p, size);
  else
    buffer_.insert(buffer_.end(), p, p + size);
  offset_ += size;
}

void DatasetWriter::add(std::string_view id, int32_t speaker, const int32_t* ids, size_t num_ids, const float* samples,
                        size_t num_samples) {
  VC_CHECK(!finished_, "dataset cache " << path_ << " is already finished");
  VC_CHECK(id.size() <= UINT32_MAX && num_ids <= UINT32_MAX,
           "dataset cache " << path_ << ": item \"" << printable(id) << "\" is too large");
  // Items start 8-byte aligned so that, with the page-aligned mapping, ids and samples can be
  // read in place.
  const size_t aligned = round_up(offset_, 8);
  if (aligned != offset_) {
    const std::array<unsigned char, 8> zeros{};
    write_bytes(zeros.data(), aligned - offset_);
  }
  std::array<unsigned char, kItemHeaderSize> head{};
  put<uint32_t>(head.data(), 0, static_cast<uint32_t>(id.size()));
  put<int32_t>(head.data(), 4, speaker);
  put<uint32_t>(head.data(), 8, static_cast<uint32_t>(num_ids));
  put<uint32_t>(head.data(), 12, 0);
  put<uint64_t>(head.data(), 16, static_cast<uint64_t>(num_samples));
  const std::array<unsigned char, 4> pad{};
  const size_t id_pad = round_up(id.size(), 4) - id.size();

  IndexEntry e{};
  e.offset = offset_;
  e.num_samples = num_samples;
  e.num_ids = static_cast<uint32_t>(num_ids);
  uint32_t crc = crc32(head.data(), head.size());
  crc = crc32_update(crc, id.data(), id.size());
  crc = crc32_update(crc, pad.data(), id_pad);
  crc = crc32_update(crc, ids, num_ids * sizeof(int32_t));
  crc = crc32_update(crc, samples, num_samples * sizeof(float));
  e.crc = crc;

  write_bytes(head.data(), head.size());
  write_bytes(id.data(), id.size());
  write_bytes(pad.data(), id_pad);
  write_bytes(ids, num_ids * sizeof(int32_t));
  write_bytes(samples, num_samples * sizeof(float));
  e.payload_size = offset_ - e.offset;
  index_.push_back(e);
}

void DatasetWriter::finish() {
  VC_CHECK(!finished_, "dataset cache " << path_ << " is already finished");
  const size_t aligned = round_up(offset_, 8);
  if (aligned != offset_) {
    const std::array<unsigned char, 8> zeros{};
    write_bytes(zeros.data(), aligned - offset_);
  }
  const uint64_t index_offset = offset_;
  std::vector<unsigned char> index(index_.size() * kIndexEntrySize);
  for (size_t i = 0; i < index_.size(); ++i) {
    unsigned char* p = index.data() + i * kIndexEntrySize;
    put<uint64_t>(p, 0, index_[i].offset);
    put<uint64_t>(p, 8, index_[i].payload_size);
    put<uint64_t>(p, 16, index_[i].num_samples);
    put<uint32_t>(p, 24, index_[i].num_ids);
    put<uint32_t>(p, 28, index_[i].crc);
  }
  write_bytes(index.data(), index.size());
  const uint64_t file_size = offset_;

  std::array<unsigned char, kHeaderSize> header{};
  std::memcpy(header.data(), kMagic, 4);
  put<uint32_t>(header.data(), 4, kVersion);
  put<uint32_t>(header.data(), 8, static_cast<uint32_t>(sample_rate_));
  put<uint32_t>(header.data(), 12, kSampleFormatFloat32);
  put<uint64_t>(header.data(), 16, index_.size());
  put<uint64_t>(header.data(), 24, index_offset);
  put<uint64_t>(header.data(), 32, file_size);
  put<uint64_t>(header.data(), 40, tokenizer_hash_);
  put<uint32_t>(header.data(), 48, crc32(index.data(), index.size()));
  put<uint32_t>(header.data(), kHeaderCrcOffset, crc32(header.data(), kHeaderCrcOffset));

  // Flush the buffered tail, then put the header in place.
  if (!buffer_.empty()) {
    const std::vector<char> tail = std::move(buffer_);
    buffer_.clear();
    size_t done = 0;
    while (done < tail.size()) {
      const ssize_t w = ::write(fd_, tail.data() + done, tail.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) fail_and_clean("writing " + tmp_path_ + " failed: " + std::strerror(errno));
      done += static_cast<size_t>(w);
    }
  }
  if (::pwrite(fd_, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size()))
    fail_and_clean("writing the header of " + tmp_path_ + " failed: " + std::strerror(errno));
  if (::fsync(fd_) != 0) fail_and_clean("fsync of " + tmp_path_ + " failed: " + std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    ::unlink(tmp_path_.c_str());
    VC_FAIL("closing " << tmp_path_ << " failed: " << std::strerror(errno));
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_path_.c_str());
    VC_FAIL("renaming " << tmp_path_ << " to " << path_ << " failed: " << std::strerror(err));
  }
  finished_ = true;
  // Make the rename itself durable.
  std::string dir = std::filesystem::path(path_).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// ---------------------------------------------------------------- reader

DatasetReader::DatasetReader(DatasetReader&& o) noexcept { *this = std::move(o); }

DatasetReader& DatasetReader::operator=(DatasetReader&& o) noexcept {
  if (this != &o) {
    if (mapped_) ::munmap(const_cast<unsigned char*>(data_), file_size_);
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = o.fd_;
    data_ = o.data_;
    file_size_ = o.file_size_;
    mapped_ = o.mapped_;
    owned_ = std::move(o.owned_);  // moving a vector keeps its buffer, so data_ stays valid
    sample_rate_ = o.sample_rate_;
    tokenizer_hash_ = o.tokenizer_hash_;
    verify_ = o.verify_;
    index_ = std::move(o.index_);
    o.fd_ = -1;
    o.data_ = nullptr;
    o.file_size_ = 0;
    o.mapped_ = false;
  }
  return *this;
}

DatasetReader::~DatasetReader() {
  if (mapped_) ::munmap(const_cast<unsigned char*>(data_), file_size_);
  if (fd_ >= 0) ::close(fd_);
}

namespace {

void check_not_truncated(const std::string& path, size_t size) {
  VC_CHECK(size >= kHeaderSize, "dataset cache " << path << " is truncated: " << size << " bytes, less than the "
                                                 << kHeaderSize << "-byte header");
}

}  // namespace

DatasetReader DatasetReader::open(const std::string& path, DatasetVerify verify) {
  DatasetReader r;
  r.path_ = path;
  r.verify_ = verify;
  // r owns the descriptor from here on: every error below closes it with r.
  r.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  VC_CHECK(r.fd_ >= 0, "cannot open dataset cache " << path << ": " << std::strerror(errno));
  struct stat st {};
  VC_CHECK(::fstat(r.fd_, &st) == 0, "cannot stat dataset cache " << path << ": " << std::strerror(errno));
  const size_t size = static_cast<size_t>(st.st_size);
  check_not_truncated(path, size);  // before mmap, which refuses an empty file
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, r.fd_, 0);
  VC_CHECK(map != MAP_FAILED, "cannot map dataset cache " << path << ": " << std::strerror(errno));
  r.data_ = static_cast<const unsigned char*>(map);
  r.file_size_ = size;
  r.mapped_ = true;
  r.validate();
  return r;
}

DatasetReader DatasetReader::from_bytes(std::vector<unsigned char> bytes, const std::string& source,
                                        DatasetVerify verify) {
  check_not_truncated(source, bytes.size());
  DatasetReader r;
  r.path_ = source;
  r.verify_ = verify;
  r.owned_ = std::move(bytes);
  r.data_ = r.owned_.data();
  r.file_size_ = r.owned_.size();
  r.validate();
  return r;
}

void DatasetReader::validate() {
  const std::string& path = path_;
  const size_t size = file_size_;
  const unsigned char* h = data_;
  VC_CHECK(std::memcmp(h, kMagic, 4) == 0, path << " is not a vitscuda dataset cache (no VCDS magic)");
  const uint32_t version = get<uint32_t>(h, 4);
  VC_CHECK(version == kVersion,
           "dataset cache " << path << " has format version " << version << "; this build reads version " << kVersion);
  const uint32_t stored_header_crc = get<uint32_t>(h, kHeaderCrcOffset);
  const uint32_t header_crc = crc32(h, kHeaderCrcOffset);
  VC_CHECK(stored_header_crc == header_crc, "dataset cache " << path << ": header is corrupt (CRC32 "
                                                             << hex32(header_crc) << ", stored "
                                                             << hex32(stored_header_crc) << ")");
  const uint32_t sample_rate = get<uint32_t>(h, 8);
  const uint32_t sample_format = get<uint32_t>(h, 12);
  const uint64_t count = get<uint64_t>(h, 16);
  const uint64_t index_offset = get<uint64_t>(h, 24);
  const uint64_t file_size = get<uint64_t>(h, 32);
  VC_CHECK(file_size == size, "dataset cache " << path << " is " << (size < file_size ? "truncated" : "too long")
                                               << ": its header says " << file_size << " bytes, the file has " << size);
  VC_CHECK(sample_rate > 0 && sample_rate <= 1000000,
           "dataset cache " << path << ": invalid sample rate " << sample_rate);
  VC_CHECK(sample_format == kSampleFormatFloat32,
           "dataset cache " << path << ": unknown sample format " << sample_format);
  VC_CHECK(index_offset >= kHeaderSize && index_offset <= size && count <= (size - index_offset) / kIndexEntrySize &&
               index_offset + count * kIndexEntrySize == size,
           "dataset cache " << path << ": index (offset " << index_offset << ", " << count
                            << " entries) does not end at the end of the " << size << "-byte file");
  const uint32_t index_crc = crc32(h + index_offset, count * kIndexEntrySize);
  VC_CHECK(index_crc == get<uint32_t>(h, 48), "dataset cache " << path << ": index is corrupt (CRC32 "
                                                               << hex32(index_crc) << ", stored "
                                                               << hex32(get<uint32_t>(h, 48)) << ")");
  sample_rate_ = static_cast<int>(sample_rate);
  tokenizer_hash_ = get<uint64_t>(h, 40);
  index_.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const unsigned char* p = h + index_offset + i * kIndexEntrySize;
    index_[i] = {get<uint64_t>(p, 0), get<uint64_t>(p, 8), get<uint64_t>(p, 16), get<uint32_t>(p, 24),
                 get<uint32_t>(p, 28)};
  }
  uint64_t previous_end = kHeaderSize;
  for (size_t i = 0; i < count; ++i) {
    check_index(i);
    VC_CHECK(index_[i].offset >= previous_end,
             "dataset cache " << path << ": item " << i << " overlaps the item before it");
    previous_end = index_[i].offset + index_[i].payload_size;
    if (verify_ == DatasetVerify::All) verify_item_crc(i);
  }
}

// Structure of item i: the index entry within the item region, the item's own header agreeing
// with the index, and the lengths adding up to the payload size.
void DatasetReader::check_index(size_t i) const {
  const IndexEntry& e = index_[i];
  const uint64_t region_end = file_size_ - index_.size() * kIndexEntrySize;
  VC_CHECK(e.offset >= kHeaderSize && e.offset % 8 == 0 && e.offset <= region_end &&
               e.payload_size >= kItemHeaderSize && e.payload_size <= region_end - e.offset,
           "dataset cache " << path_ << ": item " << i << " has an invalid place (offset " << e.offset << ", "
                            << e.payload_size << " bytes) in a " << file_size_ << "-byte file");
  const unsigned char* p = data_ + e.offset;
  const uint64_t id_len = get<uint32_t>(p, 0);
  const uint64_t num_ids = get<uint32_t>(p, 8);
  const uint64_t num_samples = get<uint64_t>(p, 16);
  const uint64_t room = e.payload_size - kItemHeaderSize;
  const bool fits = id_len <= room && num_ids <= room / 4 && num_samples <= room / 4 &&
                    round_up(id_len, 4) + 4 * num_ids + 4 * num_samples == room;
  VC_CHECK(fits && num_ids == e.num_ids && num_samples == e.num_samples,
           "dataset cache " << path_ << ": item " << i << " is corrupt: its lengths (id " << id_len << ", " << num_ids
                            << " ids, " << num_samples << " samples) do not match its index entry (" << e.num_ids
                            << " ids, " << e.num_samples << " samples, " << e.payload_size << " bytes)");
}

void DatasetReader::verify_item_crc(size_t i) const {
  const IndexEntry& e = index_[i];
  const uint32_t crc = crc32(data_ + e.offset, e.payload_size);
  if (crc != e.crc) {
    const uint32_t id_len = get<uint32_t>(data_ + e.offset, 0);
    const std::string_view id(reinterpret_cast<const char*>(data_ + e.offset + kItemHeaderSize), id_len);
    VC_FAIL("dataset cache " << path_ << ": item " << i << " (id \"" << printable(id) << "\") is corrupt: CRC32 "
                             << hex32(crc) << ", stored " << hex32(e.crc));
  }
}

double DatasetReader::total_seconds() const {
  double samples = 0;
  for (const IndexEntry& e : index_) samples += static_cast<double>(e.num_samples);
  return sample_rate_ > 0 ? samples / sample_rate_ : 0.0;
}

size_t DatasetReader::num_samples(size_t i) const {
  VC_CHECK(i < index_.size(),
           "dataset cache " << path_ << ": item " << i << " out of range (" << index_.size() << " items)");
  return index_[i].num_samples;
}

size_t DatasetReader::num_ids(size_t i) const {
  VC_CHECK(i < index_.size(),
           "dataset cache " << path_ << ": item " << i << " out of range (" << index_.size() << " items)");
  return index_[i].num_ids;
}

DatasetItemView DatasetReader::view(size_t i) const {
  VC_CHECK(i < index_.size(),
           "dataset cache " << path_ << ": item " << i << " out of range (" << index_.size() << " items)");
  if (verify_ == DatasetVerify::HeaderOnly) verify_item_crc(i);
  const IndexEntry& e = index_[i];
  const unsigned char* p = data_ + e.offset;
  DatasetItemView v;
  const uint32_t id_len = get<uint32_t>(p, 0);
  v.speaker = get<int32_t>(p, 4);
  v.id = std::string_view(reinterpret_cast<const char*>(p + kItemHeaderSize), id_len);
  const unsigned char* ids = p + kItemHeaderSize + round_up(id_len, 4);
  v.num_ids = e.num_ids;
  v.ids = reinterpret_cast<const int32_t*>(ids);
  v.num_samples = e.num_samples;
  v.samples = reinterpret_cast<const float*>(ids + 4 * static_cast<size_t>(e.num_ids));
  return v;
}

DatasetItem DatasetReader::item(size_t i) const {
  VC_CHECK(i < index_.size(),
           "dataset cache " << path_ << ": item " << i << " out of range (" << index_.size() << " items)");
  const IndexEntry& e = index_[i];
  // Through pread rather than the mapping: reading a mapped page past the end of a file that was
  // cut short after open raises SIGBUS, a short read is an error that names the item. A cache held
  // in memory (from_bytes) is copied from there.
  std::vector<unsigned char> payload(e.payload_size);
  size_t got = 0;
  if (fd_ < 0) {
    std::memcpy(payload.data(), data_ + e.offset, payload.size());
    got = payload.size();
  }
  while (got < payload.size()) {
    const ssize_t n = ::pread(fd_, payload.data() + got, payload.size() - got, static_cast<off_t>(e.offset + got));
    if (n < 0 && errno == EINTR) continue;
    VC_CHECK(n >= 0, "dataset cache " << path_ << ": item " << i << ": reading " << payload.size()
                                      << " bytes at offset " << e.offset << " failed: " << std::strerror(errno));
    VC_CHECK(n > 0, "dataset cache " << path_ << ": item " << i << ": only " << got << " of " << payload.size()
                                     << " bytes at offset " << e.offset
                                     << " could be read: the file is shorter than when it was opened (truncated or "
                                        "rewritten in place while in use)");
    got += static_cast<size_t>(n);
  }
  const unsigned char* p = payload.data();
  const uint32_t id_len = get<uint32_t>(p, 0);
  const uint32_t crc = crc32(p, payload.size());
  if (crc != e.crc) {
    const std::string_view id(reinterpret_cast<const char*>(p + kItemHeaderSize),
                              std::min<size_t>(id_len, payload.size() - kItemHeaderSize));
    VC_FAIL("dataset cache " << path_ << ": item " << i << " (id \"" << printable(id) << "\") is corrupt: CRC32 "
                             << hex32(crc) << ", stored " << hex32(e.crc));
  }
  // The bytes are the ones whose lengths open() checked against the index (same CRC).
  DatasetItem item;
  item.speaker = get<int32_t>(p, 4);
  item.id.assign(reinterpret_cast<const char*>(p + kItemHeaderSize), id_len);
  const unsigned char* ids = p + kItemHeaderSize + round_up(id_len, 4);
  // memcpy out of the byte buffer (it holds no int32 or float objects to point at); an empty
  // vector's data() may be null, which memcpy must not be given even for 0 bytes.
  item.ids.resize(e.num_ids);
  if (e.num_ids) std::memcpy(item.ids.data(), ids, 4 * static_cast<size_t>(e.num_ids));
  item.samples.resize(e.num_samples);
  if (e.num_samples)
    std::memcpy(item.samples.data(), ids + 4 * static_cast<size_t>(e.num_ids), 4 * static_cast<size_t>(e.num_samples));
  return item;
}

}  // namespace vitscuda::io
