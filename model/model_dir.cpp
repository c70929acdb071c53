#include "model/model_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace fs = std::filesystem;

namespace vitscuda::model {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VC_CHECK(in, "cannot open " << path << ": " << std::strerror(errno));
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  VC_CHECK(fd >= 0, "cannot create " << tmp << ": " << std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      VC_FAIL("writing " << tmp << " failed: " << std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    VC_FAIL("flushing " << tmp << " failed: " << std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    VC_FAIL("renaming " << tmp << " to " << path << " failed: " << std::strerror(err));
  }
}

LoadedModel load_model_dir(const std::string& dir) {
  VC_CHECK(fs::is_directory(dir), "model directory " << dir << " does not exist");
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const std::string weights_path = (fs::path(dir) / "model.safetensors").string();
  VC_CHECK(fs::exists(config_path), dir << " has no config.json");
  VC_CHECK(fs::exists(weights_path), dir << " has no model.safetensors");
  LoadedModel loaded;
  loaded.model = std::make_unique<VitsModel>(io::VitsConfig::from_file(config_path));
  io::SafetensorsFile file = io::SafetensorsFile::open(weights_path);
  loaded.import = import_parameters(file, loaded.model->params());
  if (!loaded.import.ok()) VC_FAIL(loaded.import.summary(weights_path));
  loaded.tokenizer = io::Tokenizer::from_dir(dir);
  return loaded;
}

void save_model_dir(const std::string& dir, const VitsModel& model, const std::string& tokenizer_source_dir,
                    WeightNormLayout layout, const std::map<std::string, std::string>& dtypes,
                    const std::map<std::string, std::string>& metadata) {
  fs::create_directories(dir);
  save_parameters((fs::path(dir) / "model.safetensors").string(), model.params(), layout, dtypes, metadata);
  write_file_atomic((fs::path(dir) / "config.json").string(), model.config().to_json().dump(2) + "\n");
  for (const char* name : {"vocab.json", "tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path src = fs::path(tokenizer_source_dir) / name;
    if (fs::exists(src) && fs::absolute(src) != fs::absolute(fs::path(dir) / name))
      write_file_atomic((fs::path(dir) / name).string(), read_file(src.string()));
  }
  VC_CHECK(fs::exists(fs::path(dir) / "vocab.json"),
           "no vocab.json in " << tokenizer_source_dir << ": a model directory needs the tokenizer's vocabulary");
}

}  // namespace vitscuda::model
