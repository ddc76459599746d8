// Thread start+join: tandem::thread beside std::thread, both running an empty target. One
// iteration creates, starts and joins one thread; real time, since the work is in the new thread.
#include <benchmark/benchmark.h>

#include <thread>

#if __has_include(<tandem/thread.hpp>)
#include <tandem/thread.hpp>
#define TANDEM_BENCH_THREAD 1
#endif

namespace {

void thread_std_thread(benchmark::State& state) {
  for (auto _ : state) {
    std::thread sut{[] {}};
    sut.join();
  }
}
BENCHMARK(thread_std_thread)->Name("thread/std_thread")->UseRealTime();

#ifdef TANDEM_BENCH_THREAD
void thread_tandem(benchmark::State& state) {
  for (auto _ : state) {
    tandem::thread sut{[] {}};
    sut.start();
    benchmark::DoNotOptimize(sut.join());
  }
}
BENCHMARK(thread_tandem)->Name("thread/tandem")->UseRealTime();
#endif

} // namespace
