// Helpers shared by tandem's benchmarks.
#pragma once

#include <chrono>
#include <functional>
#include <latch>
#include <thread>
#include <vector>

namespace tandem::bench {

/// Runs every party in its own std::thread, releases them together once all have started, and
/// returns the seconds from the release until the last one has finished (joins included).
/// Thread creation stays outside the measured time, so a batch measures the work itself; the
/// same helper runs tandem's side and the baseline's, so both pay the same gate and joins.
inline double run_together(const std::vector<std::function<void()>>& parties) {
  std::latch ready{static_cast<std::ptrdiff_t>(parties.size())};
  std::latch go{1};
  std::vector<std::thread> threads;
  threads.reserve(parties.size());
  for (const auto& party : parties)
    threads.emplace_back([&] {
      ready.count_down();
      go.wait();
      party();
    });
  ready.wait();
  auto start = std::chrono::steady_clock::now();
  go.count_down();
  for (auto& t : threads) t.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace tandem::bench
