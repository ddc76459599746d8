// The doctest runner shared by every tandem test executable.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <csignal>

// Test executables whose cases start processes define this hook: a process started with the
// spawn method re-executes the test binary, and the hook turns that execution into the child
// (it runs the target and exits) before doctest sees the command line.
extern "C" __attribute__((weak)) void tandem_test_bootstrap(int argc, char** argv);

int main(int argc, char** argv) {
  if (tandem_test_bootstrap != nullptr) tandem_test_bootstrap(argc, argv);
  // A test that writes to a closed pipe must see EPIPE, not die.
  std::signal(SIGPIPE, SIG_IGN);
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
