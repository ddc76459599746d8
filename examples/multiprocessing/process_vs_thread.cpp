// Processes or threads? The same work on N threads and on N processes, measured side by side.
//
//   start cost       start and join one worker that does nothing
//   message cost     one round trip: the main program sends a number, the worker sends it back
//                    (threads: a pair of tandem::queue; processes: a duplex mp::connection)
//   CPU-bound work   count the primes below a bound, split across N workers
//   memory           what one more idle worker adds: the resident memory sixteen idle threads
//                    add to the program, per thread; the private pages of an idle process
//
// and prints a table with a short explanation. Every figure depends on the machine; the shape of
// the table does not: processes cost more to start and per message, threads share everything
// (and so can corrupt everything), and CPU-bound C++ scales on both alike, because C++ threads
// have no global interpreter lock. In Python, only processes scale CPU-bound work.
//
//   process_vs_thread [--workers=N] [--bound=N] [--round-trips=N]

#include <tandem/mp/pipe.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/queue.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include "check.hpp"

#include <caf/actor_system_config.hpp>

#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace mp = tandem::mp;
using clock_type = std::chrono::steady_clock;

namespace {

// -- the work ---------------------------------------------------------------------------------

// Primes in [from, to), by trial division: pure CPU, no memory traffic, no shared state.
std::uint64_t count_primes(std::uint64_t from, std::uint64_t to) {
  std::uint64_t n = 0;
  for (std::uint64_t x = from < 2 ? 2 : from; x < to; ++x) {
    bool prime = true;
    for (std::uint64_t d = 2; d * d <= x; ++d)
      if (x % d == 0) {
        prime = false;
        break;
      }
    n += prime ? 1 : 0;
  }
  return n;
}

// Worker i of n counts the numbers congruent to i modulo n (in blocks), so shares are even.
std::uint64_t count_share(std::uint64_t bound, std::size_t i, std::size_t n) {
  constexpr std::uint64_t block = 1000;
  std::uint64_t total = 0;
  for (std::uint64_t from = i * block; from < bound; from += n * block)
    total += count_primes(from, std::min(from + block, bound));
  return total;
}

// -- process targets ---------------------------------------------------------------------------

void do_nothing() {}

void prime_worker(std::uint64_t bound, std::size_t i, std::size_t n, mp::connection out) {
  out.send(count_share(bound, i, n));
}

void echo_worker(mp::connection conn) {
  try {
    for (;;) conn.send(conn.recv<std::int64_t>());
  } catch (const tandem::eof_error&) {
    // The main program closed its end: done.
  }
}

// Reports this process's resident memory, then waits until the main program closes the pipe.
std::uint64_t rss_kib(pid_t pid) {
  std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      std::uint64_t kib = 0;
      status >> kib;
      return kib;
    }
    status.ignore(4096, '\n');
  }
  return 0;
}

// The pages only this process maps (Private_Clean + Private_Dirty): what it adds to the machine,
// leaving out the code and libraries it shares with its parent.
std::uint64_t private_kib(pid_t pid) {
  std::ifstream rollup{"/proc/" + std::to_string(pid) + "/smaps_rollup"};
  std::string key;
  std::uint64_t total = 0;
  while (rollup >> key) {
    if (key == "Private_Clean:" || key == "Private_Dirty:") {
      std::uint64_t kib = 0;
      rollup >> kib;
      total += kib;
    }
    rollup.ignore(4096, '\n');
  }
  return total;
}

void idle_worker(mp::connection conn) {
  conn.send(private_kib(getpid()));
  try {
    (void)conn.recv_bytes(); // EOF when the main program is done
  } catch (const tandem::eof_error&) {
  }
}

// -- measurements ------------------------------------------------------------------------------

struct figures {
  double start_us = 0;      // per worker
  double round_trip_us = 0; // per message there and back
  double cpu_seconds = 0;   // wall time of the CPU-bound work
  double memory_kib = 0;    // per idle worker
  std::uint64_t primes = 0;
};

double micros(clock_type::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

figures measure_threads(std::size_t workers, std::uint64_t bound, int trips) {
  figures f;
  constexpr int starts = 50;
  auto t0 = clock_type::now();
  for (int i = 0; i < starts; ++i) {
    tandem::thread t{[] {}};
    t.start();
    t.join();
  }
  f.start_us = micros(clock_type::now() - t0) / starts;

  tandem::queue<std::int64_t> to_worker, from_worker;
  tandem::thread echo{[&] {
    for (;;) {
      auto x = to_worker.get();
      if (x < 0) return;
      from_worker.put(x);
    }
  }};
  echo.start();
  t0 = clock_type::now();
  for (int i = 0; i < trips; ++i) {
    to_worker.put(i);
    (void)from_worker.get();
  }
  f.round_trip_us = micros(clock_type::now() - t0) / trips;
  to_worker.put(-1);
  echo.join();

  std::vector<std::uint64_t> counts(workers);
  std::vector<tandem::thread> threads;
  t0 = clock_type::now();
  for (std::size_t i = 0; i < workers; ++i)
    threads.emplace_back(
        [&counts, bound, i, workers] { counts[i] = count_share(bound, i, workers); });
  for (auto& t : threads) t.start();
  for (auto& t : threads) t.join();
  f.cpu_seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  for (auto c : counts) f.primes += c;

  // Sixteen idle threads: the resident memory they add to this process.
  constexpr int idle = 16;
  auto before = rss_kib(getpid());
  tandem::queue<int> release;
  std::vector<tandem::thread> sleepers;
  for (int i = 0; i < idle; ++i) sleepers.emplace_back([&release] { (void)release.get(); });
  for (auto& t : sleepers) t.start();
  std::this_thread::sleep_for(50ms);
  auto after = rss_kib(getpid());
  for (int i = 0; i < idle; ++i) release.put(0);
  for (auto& t : sleepers) t.join();
  f.memory_kib = static_cast<double>(after > before ? after - before : 0) / idle;
  return f;
}

figures measure_processes(std::size_t workers, std::uint64_t bound, int trips) {
  figures f;
  constexpr int starts = 20;
  auto t0 = clock_type::now();
  for (int i = 0; i < starts; ++i) {
    mp::process p{do_nothing};
    p.start();
    p.join();
  }
  f.start_us = micros(clock_type::now() - t0) / starts;

  {
    auto [mine, theirs] = mp::pipe();
    mp::process echo{echo_worker, std::move(theirs)};
    echo.start();
    t0 = clock_type::now();
    for (int i = 0; i < trips; ++i) {
      mine.send(std::int64_t{i});
      (void)mine.recv<std::int64_t>();
    }
    f.round_trip_us = micros(clock_type::now() - t0) / trips;
    mine.close();
    echo.join();
  }

  std::vector<mp::process> procs;
  std::vector<mp::connection> results;
  t0 = clock_type::now();
  for (std::size_t i = 0; i < workers; ++i) {
    auto [reader, writer] = mp::pipe(false);
    procs.emplace_back(prime_worker, bound, i, workers, std::move(writer));
    results.push_back(std::move(reader));
  }
  for (auto& p : procs) p.start();
  for (auto& r : results) f.primes += r.recv<std::uint64_t>();
  for (auto& p : procs) p.join();
  f.cpu_seconds = std::chrono::duration<double>(clock_type::now() - t0).count();

  // An idle process reports the memory only it maps.
  auto [mine, theirs] = mp::pipe();
  mp::process idle{idle_worker, std::move(theirs)};
  idle.start();
  f.memory_kib = static_cast<double>(mine.recv<std::uint64_t>());
  mine.close();
  idle.join();
  return f;
}

struct config : caf::actor_system_config {
  std::size_t workers = mp::cpu_count();
  std::uint64_t bound = 3'000'000;
  int round_trips = 5'000;
  config() {
    opt_group{custom_options_, "global"}
        .add(workers, "workers,w", "workers of each kind (default: usable CPUs)")
        .add(bound, "bound,b", "count the primes below this (default 3000000)")
        .add(round_trips, "round-trips,r", "messages there and back (default 5000)");
  }
};

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{std::make_unique<config>(), argc, argv};
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const auto& cfg = static_cast<const config&>(rt.config());
  std::size_t n = std::max<std::size_t>(cfg.workers, 1);

  std::printf("N = %zu workers, primes below %" PRIu64 ", %d round trips, start method %s\n\n", n,
              cfg.bound, cfg.round_trips,
              std::string{mp::to_string(mp::get_start_method())}.c_str());
  auto t = measure_threads(n, cfg.bound, cfg.round_trips);
  auto p = measure_processes(n, cfg.bound, cfg.round_trips);
  auto single = clock_type::now();
  std::uint64_t expected = count_share(cfg.bound, 0, 1);
  double one = std::chrono::duration<double>(clock_type::now() - single).count();

  std::printf("%-34s %14s %14s %10s\n", "", "threads", "processes", "ratio");
  auto row = [](const char* what, double a, double b, const char* unit) {
    std::printf("%-34s %11.1f %-2s %11.1f %-2s %9.1fx\n", what, a, unit, b, unit,
                a > 0 ? b / a : 0.0);
  };
  row("start + join, per worker", t.start_us, p.start_us, "us");
  row("round trip, per message", t.round_trip_us, p.round_trip_us, "us");
  row("CPU-bound work, wall time", t.cpu_seconds * 1e3, p.cpu_seconds * 1e3, "ms");
  row("private memory, per idle worker", t.memory_kib, p.memory_kib, "KB");
  std::printf("%-34s %11.2fx    %11.2fx\n", "CPU-bound speed-up over 1 thread", one / t.cpu_seconds,
              one / p.cpu_seconds);

  std::printf(
      "\nWhat the table says:\n"
      "- A thread starts in microseconds; a process costs a fork (or a fresh program with "
      "spawn)\n  and its own page tables. Start workers once and feed them, in either case.\n"
      "- A message between threads is a pointer hand-off in shared memory; between processes "
      "it is\n  serialized, copied through the kernel, and wakes another address space. Send "
      "fewer,\n  larger messages to processes (batches).\n"
      "- CPU-bound C++ scales on threads and processes alike (no global interpreter lock): "
      "choose\n  processes for isolation, not speed. A crashing process takes only itself down "
      "(its\n  exit code says how it died); a crashing thread takes the program.\n"
      "- An idle thread costs the pages of its stack it touched; an idle process its own "
      "heap,\n  stacks, page tables and copies of written pages (code and libraries stay "
      "shared).\n");

  example::check(t.primes == expected, "the threads counted every prime once");
  example::check(p.primes == expected, "the processes counted every prime once");
  example::check(p.start_us > 0 && t.start_us > 0, "both kinds of worker started");
  return example::exit_status();
}
