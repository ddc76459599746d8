// Cross-process messaging: tandem::mp beside the kernel and Boost.Interprocess doing the same work.
//
//   mpqueue_64b, mpqueue_64k   items from one producer process to one consumer process:
//                              mp::queue vs Boost.Interprocess message_queue (same capacity)
//   pipe_rt_1cpu, pipe_rt_2cpu 64-byte round trips between two processes pinned to one CPU or to
//                              two: mp::connection vs a bare socketpair
//   pipe_1mib                  1 MiB messages through a connection, vs memcpy of 1 MiB
//   spawn_start, fork_start    a process started until its first message has arrived and it has
//                              been joined, vs posix_spawn(/bin/true) + waitpid and fork + waitpid
//
// Every transfer pair starts its peer process before the clock and releases it through a pipe, so
// a batch measures the transfer, not the process start; the figure is items (or round trips, or
// messages) per second of manual time. The start pairs time whole starts.
#include <benchmark/benchmark.h>

#include "support/process_support.hpp"

#include <boost/interprocess/ipc/message_queue.hpp>

#include <sched.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#if __has_include(<tandem/mp/connection.hpp>) && __has_include(<tandem/mp/pipe.hpp>)
#include <tandem/mp/connection.hpp>
#include <tandem/mp/pipe.hpp>
#define TANDEM_BENCH_CONNECTION 1
#endif
#if __has_include(<tandem/mp/process.hpp>)
#include <tandem/mp/process.hpp>
#define TANDEM_BENCH_PROCESS 1
#endif
#if __has_include(<tandem/mp/queue.hpp>)
#include <tandem/mp/queue.hpp>
#define TANDEM_BENCH_MP_QUEUE 1
#endif

extern char** environ;

#ifdef TANDEM_BENCH_PROCESS
// A process started with the spawn or forkserver method re-executes this binary: become it.
extern "C" void tandem_bench_bootstrap(int, char**) {
  tandem::mp::freeze_support();
}
#endif

namespace {

namespace bip = boost::interprocess;
using clock_type = std::chrono::steady_clock;

using namespace tandem_bench;

// -- queues: 1 producer process -> 1 consumer process ----------------------------------------

constexpr std::int64_t small_batch = 1 << 16; // 64-byte items per iteration
constexpr std::int64_t large_batch = 1 << 11; // 64 KiB items per iteration
constexpr std::size_t small_capacity = 1024;  // items the queue holds
constexpr std::size_t large_capacity = 64;

void boost_transfer(benchmark::State& state, std::size_t item_size, std::size_t capacity,
                    std::int64_t batch) {
  const std::string name = "tandem-bench-mq-" + std::to_string(::getpid());
  for (auto _ : state) {
    bip::message_queue::remove(name.c_str());
    bip::message_queue mq{bip::create_only, name.c_str(), capacity, item_size};
    gate go;
    pid_t peer = fork_peer([&] {
      bip::message_queue out{bip::open_only, name.c_str()};
      std::vector<unsigned char> item(item_size);
      go.wait();
      for (std::int64_t i = 0; i < batch; ++i) {
        std::memcpy(item.data(), &i, sizeof i);
        out.send(item.data(), item.size(), 0);
      }
    });
    std::vector<unsigned char> item(item_size);
    std::int64_t sum = 0;
    auto start = clock_type::now();
    go.open();
    for (std::int64_t i = 0; i < batch; ++i) {
      std::size_t received = 0;
      unsigned priority = 0;
      mq.receive(item.data(), item.size(), received, priority);
      std::int64_t v;
      std::memcpy(&v, item.data(), sizeof v);
      sum += v;
    }
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
    bool ok = reap(peer);
    bip::message_queue::remove(name.c_str());
    if (!ok || sum != batch * (batch - 1) / 2) {
      state.SkipWithError("items were lost or the producer failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * static_cast<std::int64_t>(item_size));
}

void mpqueue_64b_boost(benchmark::State& state) {
  boost_transfer(state, 64, small_capacity, small_batch);
}
void mpqueue_64k_boost(benchmark::State& state) {
  boost_transfer(state, 64 * 1024, large_capacity, large_batch);
}
BENCHMARK(mpqueue_64b_boost)->Name("mpqueue_64b/boost_message_queue")->UseManualTime();
BENCHMARK(mpqueue_64k_boost)->Name("mpqueue_64k/boost_message_queue")->UseManualTime();

#ifdef TANDEM_BENCH_MP_QUEUE
// The same transfer through tandem::mp::queue with the same item limit (maxsize) and a buffer
// just large enough for that many items (each carries an 8-byte header), but no larger than the
// default buffer (1 MiB): 64-byte items get a 128 KiB ring holding all 1024; 64 KiB items fill the
// default 1 MiB ring at 15, which keeps the ring in the cache, where message_queue's 64 slots of
// 64 KiB (4 MiB) do not fit.
template <std::size_t Size>
void tandem_transfer(benchmark::State& state, std::size_t capacity, std::int64_t batch) {
  using item_type = std::array<unsigned char, Size>;
  for (auto _ : state) {
    tandem::mp::queue<item_type> q{tandem::mp::queue_options{
        .maxsize = capacity,
        .buffer_bytes = std::min<std::size_t>(capacity * (Size + 8), 1 << 20)}};
    gate go;
    pid_t peer = fork_peer([&] {
      item_type item{};
      go.wait();
      for (std::int64_t i = 0; i < batch; ++i) {
        std::memcpy(item.data(), &i, sizeof i);
        q.put(item);
      }
    });
    std::int64_t sum = 0;
    auto start = clock_type::now();
    go.open();
    for (std::int64_t i = 0; i < batch; ++i) {
      item_type item = q.get();
      std::int64_t v;
      std::memcpy(&v, item.data(), sizeof v);
      sum += v;
    }
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
    bool ok = reap(peer);
    if (!ok || sum != batch * (batch - 1) / 2) {
      state.SkipWithError("items were lost or the producer failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * static_cast<std::int64_t>(Size));
}

void mpqueue_64b_tandem(benchmark::State& state) {
  tandem_transfer<64>(state, small_capacity, small_batch);
}
void mpqueue_64k_tandem(benchmark::State& state) {
  tandem_transfer<64 * 1024>(state, large_capacity, large_batch);
}
BENCHMARK(mpqueue_64b_tandem)->Name("mpqueue_64b/tandem")->UseManualTime();
BENCHMARK(mpqueue_64k_tandem)->Name("mpqueue_64k/tandem")->UseManualTime();
#endif

// -- round trips: 64 bytes there and back ----------------------------------------------------

constexpr int round_trips = 20'000; // per iteration
constexpr std::size_t small_message = 64;

// Runs `round_trips` round trips per iteration against a peer process; the parent is pinned to
// CPU 0 and the peer to `peer_cpu`. `make` builds the channel pair, `echo(child_end)` is the
// peer's loop, `trip(parent_end, buffer)` one round trip.
template <class Make, class Echo, class Trip>
void round_trip(benchmark::State& state, int peer_cpu, Make make, Echo echo, Trip trip) {
  if (peer_cpu >= cpus_available()) {
    state.SkipWithError("needs two CPUs");
    return;
  }
  affinity_guard restore;
  pin_to(0);
  for (auto _ : state) {
    auto [mine, theirs] = make();
    gate go;
    pid_t peer = fork_peer([&] {
      pin_to(peer_cpu);
      mine.close();
      go.wait();
      echo(theirs);
    });
    theirs.close();
    std::array<std::byte, small_message> buffer{};
    auto start = clock_type::now();
    go.open();
    for (int i = 0; i < round_trips; ++i) trip(mine, buffer);
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
    mine.close();
    if (!reap(peer)) {
      state.SkipWithError("the echo process failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * round_trips);
}

// A socketpair end that closes itself; the baseline's channel.
class raw_socket {
public:
  explicit raw_socket(int fd) : fd_{fd} {}
  raw_socket(raw_socket&& o) noexcept : fd_{std::exchange(o.fd_, -1)} {}
  raw_socket& operator=(raw_socket&&) = delete;
  ~raw_socket() { close(); }
  void close() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }
  int fd() const { return fd_; }

private:
  int fd_;
};

std::pair<raw_socket, raw_socket> make_socketpair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) die("socketpair");
  return {raw_socket{fds[0]}, raw_socket{fds[1]}};
}

void socket_echo(raw_socket& s) {
  std::array<std::byte, small_message> buffer{};
  for (;;) {
    std::size_t got = 0;
    while (got < buffer.size()) {
      ssize_t r = ::read(s.fd(), buffer.data() + got, buffer.size() - got);
      if (r == 0) return;
      if (r < 0) {
        if (errno == EINTR) continue;
        die("echo read");
      }
      got += static_cast<std::size_t>(r);
    }
    write_all(s.fd(), buffer.data(), buffer.size());
  }
}

void socket_trip(raw_socket& s, std::array<std::byte, small_message>& buffer) {
  write_all(s.fd(), buffer.data(), buffer.size());
  read_all(s.fd(), buffer.data(), buffer.size());
}

void pipe_rt_1cpu_socketpair(benchmark::State& state) {
  round_trip(state, 0, make_socketpair, socket_echo, socket_trip);
}
void pipe_rt_2cpu_socketpair(benchmark::State& state) {
  round_trip(state, 1, make_socketpair, socket_echo, socket_trip);
}
BENCHMARK(pipe_rt_1cpu_socketpair)->Name("pipe_rt_1cpu/socketpair")->UseManualTime();
BENCHMARK(pipe_rt_2cpu_socketpair)->Name("pipe_rt_2cpu/socketpair")->UseManualTime();

#ifdef TANDEM_BENCH_CONNECTION
void connection_echo(tandem::mp::connection& c) {
  std::array<std::byte, small_message> buffer{};
  try {
    for (;;) {
      std::size_t n = c.recv_bytes_into(buffer);
      c.send_bytes(std::span{buffer}.first(n));
    }
  } catch (const tandem::eof_error&) {
  }
}

void connection_trip(tandem::mp::connection& c, std::array<std::byte, small_message>& buffer) {
  c.send_bytes(buffer);
  c.recv_bytes_into(buffer);
}

auto make_connections() {
  return tandem::mp::pipe();
}

void pipe_rt_1cpu_tandem(benchmark::State& state) {
  round_trip(state, 0, make_connections, connection_echo, connection_trip);
}
void pipe_rt_2cpu_tandem(benchmark::State& state) {
  round_trip(state, 1, make_connections, connection_echo, connection_trip);
}
BENCHMARK(pipe_rt_1cpu_tandem)->Name("pipe_rt_1cpu/tandem")->UseManualTime();
BENCHMARK(pipe_rt_2cpu_tandem)->Name("pipe_rt_2cpu/tandem")->UseManualTime();
#endif

// -- 1 MiB messages ---------------------------------------------------------------------------

constexpr std::size_t large_message = 1 << 20;
constexpr int large_messages = 256; // per iteration

// The bandwidth ceiling of any copy: one memcpy of 1 MiB per message, between buffers that do
// not fit in the cache together with the next pair.
void pipe_1mib_memcpy(benchmark::State& state) {
  std::vector<std::byte> from(large_message * 8, std::byte{1});
  std::vector<std::byte> to(large_message * 8);
  std::size_t slot = 0;
  for (auto _ : state) {
    auto start = clock_type::now();
    for (int i = 0; i < large_messages; ++i) {
      std::memcpy(to.data() + slot * large_message, from.data() + slot * large_message,
                  large_message);
      benchmark::DoNotOptimize(to.data());
      benchmark::ClobberMemory();
      slot = (slot + 1) % 8;
    }
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
  }
  state.SetItemsProcessed(state.iterations() * large_messages);
  state.SetBytesProcessed(state.iterations() * large_messages *
                          static_cast<std::int64_t>(large_message));
}
BENCHMARK(pipe_1mib_memcpy)->Name("pipe_1mib/memcpy")->UseManualTime();

#ifdef TANDEM_BENCH_CONNECTION
// A peer process sends `large_messages` messages of 1 MiB; this process receives each into the
// same buffer (recv_bytes_into, Python's way to receive without allocating).
void pipe_1mib_tandem(benchmark::State& state) {
  std::vector<std::byte> buffer(large_message);
  for (auto _ : state) {
    auto [reader, writer] = tandem::mp::pipe(false);
    gate go;
    pid_t peer = fork_peer([&] {
      reader.close();
      std::vector<std::byte> message(large_message, std::byte{7});
      go.wait();
      for (int i = 0; i < large_messages; ++i) writer.send_bytes(message);
    });
    writer.close();
    auto start = clock_type::now();
    go.open();
    bool intact = true;
    for (int i = 0; i < large_messages; ++i)
      intact &= reader.recv_bytes_into(buffer) == large_message && buffer.back() == std::byte{7};
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
    if (!reap(peer) || !intact) {
      state.SkipWithError("messages were lost or damaged");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * large_messages);
  state.SetBytesProcessed(state.iterations() * large_messages *
                          static_cast<std::int64_t>(large_message));
}
BENCHMARK(pipe_1mib_tandem)->Name("pipe_1mib/tandem")->UseManualTime();
#endif

// -- process start ---------------------------------------------------------------------------

void spawn_start_posix_spawn(benchmark::State& state) {
  char path[] = "/bin/true";
  char* argv[] = {path, nullptr};
  for (auto _ : state) {
    pid_t pid = 0;
    if (::posix_spawn(&pid, path, nullptr, nullptr, argv, environ) != 0) die("posix_spawn");
    if (!reap(pid)) {
      state.SkipWithError("/bin/true failed");
      break;
    }
  }
}
BENCHMARK(spawn_start_posix_spawn)->Name("spawn_start/posix_spawn_true")->UseRealTime();
// The same baseline for the default start method's pair.
BENCHMARK(spawn_start_posix_spawn)->Name("default_start/posix_spawn_true")->UseRealTime();

void fork_start_fork(benchmark::State& state) {
  for (auto _ : state) {
    pid_t pid = fork_peer([] {});
    if (!reap(pid)) {
      state.SkipWithError("the child failed");
      break;
    }
  }
}
BENCHMARK(fork_start_fork)->Name("fork_start/fork_waitpid")->UseRealTime();

#ifdef TANDEM_BENCH_PROCESS
// The child's first (and only) message: it has started and reached its target.
void say_started(tandem::mp::connection out) {
  std::array<std::byte, 1> hello{std::byte{1}};
  out.send_bytes(hello);
}

// Starts a process with `method` (the default one when empty) until its first message has
// arrived, then joins it.
void start_until_first_message(benchmark::State& state,
                               std::optional<tandem::mp::start_method> method) {
  for (auto _ : state) {
    auto [reader, writer] = tandem::mp::pipe(false);
    tandem::mp::process p{{.method = method}, say_started, std::move(writer)};
    p.start();
    bool ok = reader.recv_bytes().size() == 1;
    p.join();
    if (!ok || p.exitcode() != 0) {
      state.SkipWithError("the child failed");
      break;
    }
  }
}

void spawn_start_tandem(benchmark::State& state) {
  start_until_first_message(state, tandem::mp::start_method::spawn);
}
void fork_start_tandem(benchmark::State& state) {
  start_until_first_message(state, tandem::mp::start_method::fork);
}
void default_start_tandem(benchmark::State& state) {
  start_until_first_message(state, std::nullopt);
}
BENCHMARK(spawn_start_tandem)->Name("spawn_start/tandem")->UseRealTime();
BENCHMARK(fork_start_tandem)->Name("fork_start/tandem")->UseRealTime();
BENCHMARK(default_start_tandem)->Name("default_start/tandem")->UseRealTime();
#endif

} // namespace
