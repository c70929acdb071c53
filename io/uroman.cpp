#include "io/uroman.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"

#ifndef VITSCUDA_SOURCE_DIR
#define VITSCUDA_SOURCE_DIR "."
#endif

extern char** environ;

namespace vitscuda::io {

namespace fs = std::filesystem;

const char* const kUromanInstallCommand = "scripts/setup.sh --with-uroman";

namespace {

// Reads JSON strings, one a line, from argv[1]; writes their romanisation the same way to argv[2].
const char* const kDriver =
    "import json, sys\n"
    "import uroman\n"
    "u = uroman.Uroman()\n"
    "with open(sys.argv[1], encoding='utf-8') as f, open(sys.argv[2], 'w', encoding='utf-8') as out:\n"
    "    for line in f:\n"
    "        out.write(json.dumps(u.romanize_string(json.loads(line))) + '\\n')\n";

std::string configured_python() {
  const char* env = std::getenv("VITSCUDA_UROMAN_PYTHON");
  if (env && *env) return env;
  return (fs::path(VITSCUDA_SOURCE_DIR) / ".venv-uroman" / "bin" / "python").string();
}

}  // namespace

bool uroman_available() { return ::access(configured_python().c_str(), X_OK) == 0; }

std::string uroman_python() {
  const std::string python = configured_python();
  VC_CHECK(::access(python.c_str(), X_OK) == 0,
           "this model's tokenizer_config.json has is_uroman=true: its texts are romanised with the PyPI uroman "
           "package, which is not installed (no " << python << "). Install it with `" << kUromanInstallCommand
           << "` in " << VITSCUDA_SOURCE_DIR << ", or set VITSCUDA_UROMAN_PYTHON to a Python that can import uroman");
  return python;
}

std::vector<std::string> uroman_romanize(const std::vector<std::string>& texts) {
  if (texts.empty()) return {};
  const std::string python = uroman_python();
  std::string dir_template = (fs::temp_directory_path() / "vitscuda-uroman-XXXXXX").string();
  VC_CHECK(::mkdtemp(dir_template.data()) != nullptr,
           "uroman: cannot create a temporary directory in " << fs::temp_directory_path() << ": "
                                                            << std::strerror(errno));
  const fs::path dir = dir_template;
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  const std::string in_path = (dir / "in.jsonl").string(), out_path = (dir / "out.jsonl").string();
  {
    std::ofstream in(in_path);
    for (const std::string& t : texts) in << nlohmann::json(t).dump() << '\n';
    VC_CHECK(in.good(), "uroman: cannot write " << in_path);
  }

  std::vector<std::string> args = {python, "-c", kDriver, in_path, out_path};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawn_error = ::posix_spawn(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ);
  VC_CHECK(spawn_error == 0, "uroman: cannot start " << python << ": " << std::strerror(spawn_error));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) VC_CHECK(errno == EINTR, "uroman: waitpid failed: " << std::strerror(errno));
  VC_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "uroman (" << python << ") failed ("
                      << (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                            : "signal " + std::to_string(WTERMSIG(status)))
                      << ", its messages are above); if uroman is missing from that environment, run `"
                      << kUromanInstallCommand << "`");

  std::ifstream out(out_path);
  VC_CHECK(out, "uroman: no output in " << out_path);
  std::vector<std::string> romanised;
  std::string line;
  while (std::getline(out, line)) {
    try {
      romanised.push_back(nlohmann::json::parse(line).get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      VC_FAIL("uroman: line " << romanised.size() + 1 << " of its output is not a JSON string: " << e.what());
    }
  }
  VC_CHECK(romanised.size() == texts.size(),
           "uroman: " << texts.size() << " texts in, " << romanised.size() << " romanisations out");
  return romanised;
}

}  // namespace vitscuda::io
