// The main() of every tandem benchmark binary.
//
// It starts and joins one std::thread before measuring anything: glibc and libstdc++ take cheaper
// paths while a process has never had a second thread, and a program that uses tandem is
// multi-threaded, so every figure (tandem's and the baselines') is measured on the multi-threaded
// paths.
#include <benchmark/benchmark.h>

#include <thread>

// Benchmark binaries that start processes define this hook: a process started with the spawn
// method re-executes the binary, and the hook turns that execution into the child before Google
// Benchmark sees the command line.
extern "C" __attribute__((weak)) void tandem_bench_bootstrap(int argc, char** argv);

int main(int argc, char** argv) {
  if (tandem_bench_bootstrap != nullptr) tandem_bench_bootstrap(argc, argv);
  std::thread{[] {}}.join();
  benchmark::AddCustomContext("threads_started_before_measuring", "yes");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
