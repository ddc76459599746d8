// The main() of every tandem benchmark binary.
//
// It starts and joins one std::thread before measuring anything: glibc and libstdc++ take cheaper
// paths while a process has never had a second thread, and a program that uses tandem is
// multi-threaded, so every figure (tandem's and the baselines') is measured on the multi-threaded
// paths.
#include <benchmark/benchmark.h>

#include <thread>

int main(int argc, char** argv) {
  std::thread{[] {}}.join();
  benchmark::AddCustomContext("threads_started_before_measuring", "yes");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
