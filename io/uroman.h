// Romanisation with the PyPI `uroman` package, as transformers' VitsTokenizer (is_uroman=true) applies it:
// uroman.Uroman().romanize_string(text). The package runs in the project's own Python environment
// (scripts/setup.sh --with-uroman installs it into .venv-uroman/ at the repository root); all the texts of one
// call go through one Python process, so a corpus costs one start-up of uroman, not one per line.
#pragma once
#include <string>
#include <vector>

namespace vitscuda::io {

// The install command named in the errors.
extern const char* const kUromanInstallCommand;

// The Python interpreter that runs uroman: $VITSCUDA_UROMAN_PYTHON if set, else the project's
// .venv-uroman/bin/python. Throws vitscuda::Error naming the install command when neither exists.
std::string uroman_python();

// Whether uroman_python() would find an interpreter (it does not check that uroman imports).
bool uroman_available();

// romanize_string of each text, in order, in one Python process. Texts may hold any character
// (they travel as JSON strings). Throws if the process fails, naming its exit status.
std::vector<std::string> uroman_romanize(const std::vector<std::string>& texts);

}  // namespace vitscuda::io
