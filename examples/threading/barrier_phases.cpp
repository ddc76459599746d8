// Working in phases with tandem::barrier (Python's threading.Barrier).
//
// Heat spreads along a metal rod whose left end is held at 100 degrees and right end at 0. The rod
// is 30 cells; three threads each own 10 of them. In every step a cell becomes the mean of itself
// and its two neighbours, computed from the *previous* step's temperatures. So no thread may start
// step k+1 before every thread has finished step k: a barrier separates the steps.
//
// The barrier's action runs once per step, after every thread has arrived and before any leaves:
// the right moment to swap the "previous" and "next" arrays. wait() also returns an index, distinct
// for each thread of a step (0 to parties-1), so exactly one thread can do one-off work, such as
// printing, without any other coordination.
//
//   Python                                        tandem
//   b = threading.Barrier(3, action=swap)         tandem::barrier b{3, swap};
//   if b.wait() == 0: print(...)                  if (b.wait() == 0) std::printf(...);
//   b.wait(timeout=0.05)  # BrokenBarrierError    b.wait(50ms);  // tandem::broken_barrier_error
//   b.reset(); b.abort(); b.broken                b.reset(); b.abort(); b.broken()

#include <tandem/barrier.hpp>
#include <tandem/error.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include "check.hpp"

#include <array>
#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr std::size_t cells = 30;
constexpr std::size_t n_threads = 3;
constexpr int steps = 60;
using rod = std::array<double, cells>;

rod initial_rod() {
  rod r{};
  r.front() = 100.0; // the ends are held at fixed temperatures
  return r;
}

// One step for cells [begin, end): reads `cur`, writes `next`. The ends never change.
void step(const rod& cur, rod& next, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i)
    next[i] = (i == 0 || i == cells - 1) ? cur[i] : (cur[i - 1] + cur[i] + cur[i + 1]) / 3.0;
}

// A row of digits, one per cell: temperature / 10 (9 = 90 degrees or more).
std::string picture(const rod& r) {
  std::string s;
  for (double t : r) s += static_cast<char>('0' + std::min(9, static_cast<int>(t / 10.0)));
  return s;
}

void heat() {
  std::printf("1. heat diffusion: %zu threads, %d steps, a barrier between steps\n", n_threads,
              steps);
  rod a = initial_rod();
  rod b{};
  rod* cur = &a;
  rod* next = &b;
  int completed = 0;

  // The action runs in one of the threads, while all the others wait at the barrier: it may touch
  // the shared pointers without a lock.
  tandem::barrier barrier{n_threads, [&] {
                            std::swap(cur, next);
                            ++completed;
                          }};

  std::vector<tandem::thread> threads;
  for (std::size_t t = 0; t < n_threads; ++t) {
    threads.emplace_back(tandem::thread::options{.name = "slice-" + std::to_string(t)}, [&, t] {
      std::size_t begin = t * cells / n_threads;
      std::size_t end = (t + 1) * cells / n_threads;
      for (int s = 1; s <= steps; ++s) {
        step(*cur, *next, begin, end);
        // Everyone waits here until the step is complete; then the action swaps the arrays.
        std::size_t index = barrier.wait();
        if (index == 0 && s % 10 == 0) // one thread per step, whichever got index 0
          std::printf("   step %2d  %s   (printed by %s)\n", s, picture(*cur).c_str(),
                      tandem::current_thread().name().c_str());
      }
    });
  }
  for (auto& t : threads) t.start();
  for (auto& t : threads) t.join();

  // The same computation in one thread must give exactly the same temperatures: each cell is
  // computed by the same operations on the same inputs.
  rod x = initial_rod();
  rod y{};
  for (int s = 0; s < steps; ++s) {
    step(x, y, 0, cells);
    std::swap(x, y);
  }
  example::check(completed == steps, "the action ran once per step");
  example::check(*cur == x, "the threaded result equals the single-threaded one");
  std::printf("   %d steps, the action ran %d times, result matches a single thread: %s\n", steps,
              completed, *cur == x ? "yes" : "NO");
}

void broken() {
  std::printf("\n2. a party that never comes: timeouts break the barrier\n");
  tandem::barrier meeting{3};
  std::atomic<int> broke{0};
  std::vector<tandem::thread> attendees;
  for (int i = 0; i < 2; ++i) {
    attendees.emplace_back([&] {
      try {
        meeting.wait(100ms); // only 2 of 3 parties arrive
      } catch (const tandem::broken_barrier_error&) {
        ++broke; // the waiter that timed out, and every other waiter, get this
      }
    });
  }
  for (auto& a : attendees) a.start();
  for (auto& a : attendees) a.join();
  std::printf("   2 of 3 arrived; %d waits ended with broken_barrier_error; broken() = %s\n",
              broke.load(), meeting.broken() ? "true" : "false");
  example::check(broke.load() == 2 && meeting.broken(), "a timeout breaks the barrier for all");

  meeting.reset(); // back to the initial state, ready for a new round
  example::check(!meeting.broken() && meeting.n_waiting() == 0, "reset() repairs the barrier");
  std::printf("   after reset(): broken() = %s, parties() = %zu\n",
              meeting.broken() ? "true" : "false", meeting.parties());
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  heat();
  broken();
  return example::exit_status();
}
