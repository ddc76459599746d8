// The spawn bootstrap of tandem_process_tests: a child started with the spawn method re-executes
// this binary, and this hook turns that execution into the child before doctest runs.
#include <tandem/mp/process.hpp>

extern "C" void tandem_test_bootstrap(int, char**) {
  tandem::mp::freeze_support();
}
