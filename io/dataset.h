// The prepared-dataset cache (.vcds): token ids and resampled waveforms that training reads
// without decoding audio again.
//
// Layout, little-endian, version 1:
//   header (64 bytes): "VCDS", u32 version, u32 sample_rate, u32 sample_format (1 = float32),
//     u64 item_count, u64 index_offset, u64 file_size, u64 tokenizer_hash, u32 index_crc32,
//     u32 reserved, u32 reserved, u32 header_crc32 (of the 60 bytes before it)
//   items, each at an 8-byte-aligned offset: u32 id_len, i32 speaker, u32 num_ids, u32 reserved,
//     u64 num_samples, id bytes (zero-padded to 4), int32 ids[num_ids], float32 samples[num_samples]
//   index (at index_offset, the end of the file), 32 bytes per item:
//     u64 offset, u64 payload_size, u64 num_samples, u32 num_ids, u32 payload_crc32
// The index sits at the end so that items stream to disk as they are prepared; the header points
// at it. Lengths are in the index too, so length bucketing needs no payload reads.
// Files are written atomically (temporary file, fsync, rename). Opening checks every offset and
// length against the file size and, by default, every CRC; a mismatch names the file and the item.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vitscuda::io {

struct DatasetItem {
  std::string id;
  int32_t speaker = -1;  // -1: single-speaker model
  std::vector<int32_t> ids;
  std::vector<float> samples;  // mono, at the cache's sample rate
};

// Points into the reader's mapping; valid while the reader lives.
struct DatasetItemView {
  std::string_view id;
  int32_t speaker = -1;
  const int32_t* ids = nullptr;
  size_t num_ids = 0;
  const float* samples = nullptr;
  size_t num_samples = 0;
};

class DatasetWriter {
 public:
  // Creates PATH.tmp-<pid>; nothing appears at `path` before finish().
  DatasetWriter(const std::string& path, int sample_rate, uint64_t tokenizer_hash = 0);
  ~DatasetWriter();  // removes the temporary file unless finish() succeeded
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  void add(std::string_view id, int32_t speaker, const int32_t* ids, size_t num_ids, const float* samples,
           size_t num_samples);
  void add(const DatasetItem& item) {
    add(item.id, item.speaker, item.ids.data(), item.ids.size(), item.samples.data(), item.samples.size());
  }
  // Writes the index and header, fsyncs and renames into place.
  void finish();
  size_t size() const { return index_.size(); }

 private:
  struct IndexEntry {
    uint64_t offset, payload_size, num_samples;
    uint32_t num_ids, crc;
  };
  void write_bytes(const void* data, size_t size);
  void fail_and_clean(const std::string& message);

  std::string path_, tmp_path_;
  int sample_rate_;
  uint64_t tokenizer_hash_;
  int fd_ = -1;
  uint64_t offset_ = 0;
  std::vector<IndexEntry> index_;
  std::vector<char> buffer_;  // write-behind buffer
  bool finished_ = false;
};

enum class DatasetVerify {
  All,         // check every item's CRC on open
  HeaderOnly,  // check header, index and the structure of every item on open; an item's CRC on each access
};

class DatasetReader {
 public:
  static DatasetReader open(const std::string& path, DatasetVerify verify = DatasetVerify::All);
  // The same checks on a cache held in memory; `source` names it in errors. open() maps the file
  // and validates it through the same code.
  static DatasetReader from_bytes(std::vector<unsigned char> bytes, const std::string& source,
                                  DatasetVerify verify = DatasetVerify::All);
  DatasetReader(DatasetReader&& other) noexcept;
  DatasetReader& operator=(DatasetReader&& other) noexcept;
  DatasetReader(const DatasetReader&) = delete;
  DatasetReader& operator=(const DatasetReader&) = delete;
  ~DatasetReader();

  size_t size() const { return index_.size(); }
  int sample_rate() const { return sample_rate_; }
  uint64_t tokenizer_hash() const { return tokenizer_hash_; }
  double total_seconds() const;
  const std::string& path() const { return path_; }
  // From the index alone.
  size_t num_samples(size_t i) const;
  size_t num_ids(size_t i) const;

  // Item i, read from the file with pread(2) and CRC-checked on exactly the bytes returned, whatever
  // the verify mode. A cache damaged or cut short after open (rewritten in place under a running
  // job) gives an error naming the file and the item, never a crash.
  DatasetItem item(size_t i) const;
  // Item i in place in the read-only mapping, without copying. Only for a file nothing else writes
  // while the view is used: if the file is truncated underneath, reading the view raises SIGBUS.
  DatasetItemView view(size_t i) const;

 private:
  struct IndexEntry {
    uint64_t offset, payload_size, num_samples;
    uint32_t num_ids, crc;
  };
  DatasetReader() = default;
  // Validates the cache at data_/file_size_ and reads its index.
  void validate();
  void check_index(size_t i) const;
  void verify_item_crc(size_t i) const;

  std::string path_;
  int fd_ = -1;                          // kept open for item() (a file; -1 for from_bytes)
  const unsigned char* data_ = nullptr;  // the mapping, or owned_.data()
  size_t file_size_ = 0;
  bool mapped_ = false;                  // data_ is an mmap of file_size_ bytes
  std::vector<unsigned char> owned_;     // the bytes given to from_bytes
  int sample_rate_ = 0;
  uint64_t tokenizer_hash_ = 0;
  DatasetVerify verify_ = DatasetVerify::All;
  std::vector<IndexEntry> index_;
};

}  // namespace vitscuda::io
