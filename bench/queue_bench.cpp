// Bounded queues of int (maxsize 1024) between producer and consumer threads: tandem::queue
// beside the textbook std::mutex + std::condition_variable queue.
//
// One iteration moves a batch of items from the producers to the consumers, all started before
// the clock and released together (support/harness.hpp); the reported figure is items per second
// (manual time). Every consumer takes a fixed share, so no sentinel items are needed, and the sum
// of what was received is checked.
#include <support/harness.hpp>
#include <support/mutex_condvar_queue.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#if __has_include(<tandem/queue.hpp>)
#include <tandem/queue.hpp>
#define TANDEM_BENCH_QUEUE 1
#endif

namespace {

constexpr std::size_t maxsize = 1024;
constexpr std::int64_t batch = 1 << 17; // items per iteration: ~10 ms, far above thread start-up

template <class Queue>
void transfer(benchmark::State& state, int producers, int consumers) {
  const std::int64_t expected = batch * (batch - 1) / 2;
  for (auto _ : state) {
    Queue q{maxsize};
    std::atomic<std::int64_t> sum{0};
    std::vector<std::function<void()>> parties;
    for (int p = 0; p < producers; ++p)
      parties.emplace_back([&q, p, producers] {
        for (std::int64_t i = p; i < batch; i += producers) q.put(static_cast<int>(i));
      });
    for (int c = 0; c < consumers; ++c) {
      std::int64_t share = batch / consumers + (c < batch % consumers ? 1 : 0);
      parties.emplace_back([&q, &sum, share] {
        std::int64_t local = 0;
        for (std::int64_t i = 0; i < share; ++i) local += q.get();
        sum += local;
      });
    }
    state.SetIterationTime(tandem::bench::run_together(parties));
    if (sum != expected) {
      state.SkipWithError("items were lost or duplicated");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

using std_queue = tandem::bench::mutex_condvar_queue<int>;

void queue_1to1_std(benchmark::State& state) {
  transfer<std_queue>(state, 1, 1);
}
void queue_4to4_std(benchmark::State& state) {
  transfer<std_queue>(state, 4, 4);
}
BENCHMARK(queue_1to1_std)->Name("queue_1to1/std_mutex_condvar")->UseManualTime();
BENCHMARK(queue_4to4_std)->Name("queue_4to4/std_mutex_condvar")->UseManualTime();

#ifdef TANDEM_BENCH_QUEUE
void queue_1to1_tandem(benchmark::State& state) {
  transfer<tandem::queue<int>>(state, 1, 1);
}
void queue_4to4_tandem(benchmark::State& state) {
  transfer<tandem::queue<int>>(state, 4, 4);
}
BENCHMARK(queue_1to1_tandem)->Name("queue_1to1/tandem")->UseManualTime();
BENCHMARK(queue_4to4_tandem)->Name("queue_4to4/tandem")->UseManualTime();
#endif

} // namespace
