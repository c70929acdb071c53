// vitscuda: train and run VITS text-to-speech voices in the HF VitsModel format.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "common/error.h"

int main(int argc, char** argv) {
  CLI::App app{"vitscuda: VITS text-to-speech training and synthesis (HF VitsModel format)"};
  app.require_subcommand(1);
  vitscuda::cli::register_synth(app);
  vitscuda::cli::register_info(app);
  vitscuda::cli::register_prepare(app);
  vitscuda::cli::register_selftest(app);
  int exit_status = 0;
  vitscuda::cli::register_train(app, exit_status);
  vitscuda::cli::register_feedback(app, exit_status);
  vitscuda::cli::register_verify(app);
  vitscuda::cli::register_eval(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return exit_status;
}
