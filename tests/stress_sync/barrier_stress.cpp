// Stress: tandem::barrier over many cycles.
#include "support/watchdog.hpp"

#include <tandem/barrier.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int scaled(int n) {
  return std::max(1, static_cast<int>(n * tandem::test::stress_scale()));
}

} // namespace

TEST_SUITE("barrier stress") {

  TEST_CASE("a barrier keeps its parties in step over ten thousand cycles") {
    // Each party arrives, then records its arrival index in a mask. The action of the next cycle
    // (which runs only when every party arrived again, so after they all recorded) checks that the
    // mask holds every index exactly once and that all parties arrived, then clears both.
    tandem::test::watchdog guard{600s};
    constexpr int parties = 4;
    const int cycles = scaled(10000);
    std::atomic<int> arrivals{0};
    std::atomic<unsigned> mask{0};
    int actions = 0;   // written by the action only
    int bad_masks = 0; // written by the action only
    int bad_arrivals = 0;
    tandem::barrier sut{parties, [&] {
                          if (arrivals.exchange(0) != parties) ++bad_arrivals;
                          unsigned m = mask.exchange(0);
                          if (actions > 0 && m != (1u << parties) - 1) ++bad_masks;
                          ++actions;
                        }};
    std::atomic<int> duplicate_indices{0};
    std::vector<std::thread> threads;

    for (int p = 0; p < parties; ++p)
      threads.emplace_back([&] {
        for (int c = 0; c < cycles; ++c) {
          arrivals.fetch_add(1);
          auto index = sut.wait();
          unsigned bit = 1u << index;
          if ((mask.fetch_or(bit) & bit) != 0) duplicate_indices.fetch_add(1);
        }
      });
    for (auto& t : threads) t.join();

    CHECK(actions == cycles);
    CHECK(bad_masks == 0);
    CHECK(bad_arrivals == 0);
    CHECK(duplicate_indices.load() == 0);
    CHECK(mask.load() == (1u << parties) - 1);
    CHECK_FALSE(sut.broken());
    CHECK(sut.n_waiting() == 0);
  }

  TEST_CASE("timed waits that do not expire never break the barrier") {
    tandem::test::watchdog guard{600s};
    constexpr int parties = 3;
    const int cycles = scaled(5000);
    tandem::barrier sut{parties, {}, 60s};
    std::atomic<int> broken{0};
    std::vector<std::thread> threads;

    for (int p = 0; p < parties; ++p)
      threads.emplace_back([&, p] {
        try {
          for (int c = 0; c < cycles; ++c)
            if (p == 0)
              sut.wait(30s);
            else
              sut.wait();
        } catch (const tandem::broken_barrier_error&) {
          broken.fetch_add(1);
        }
      });
    for (auto& t : threads) t.join();

    CHECK(broken.load() == 0);
    CHECK_FALSE(sut.broken());
  }

  TEST_CASE("repeated abort and reset never leave a party hanging") {
    // Rounds of: parties pass a few cycles, one of them aborts, everyone sees the break, a second
    // barrier lines them up, and one resets the first.
    tandem::test::watchdog guard{600s};
    constexpr int parties = 4;
    const int rounds = scaled(5000);
    tandem::barrier sut{parties};
    tandem::barrier sync{parties};
    std::atomic<int> broken_seen{0};
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;

    for (int p = 0; p < parties; ++p)
      threads.emplace_back([&] {
        for (int r = 0; r < rounds; ++r) {
          try {
            sut.wait();
            if (sut.wait() == 0) sut.abort();
            sut.wait(); // broken by the abort, whoever gets here first
            wrong.fetch_add(1);
          } catch (const tandem::broken_barrier_error&) {
            broken_seen.fetch_add(1);
          }
          if (sync.wait() == 0) sut.reset();
          sync.wait();
        }
      });
    for (auto& t : threads) t.join();

    CHECK(wrong.load() == 0);
    CHECK(broken_seen.load() == parties * rounds);
    CHECK_FALSE(sut.broken());
  }
}
