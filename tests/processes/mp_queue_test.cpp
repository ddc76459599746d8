// tandem::mp::queue, joinable_queue and simple_queue across real processes: the multiprocessing
// Queue cases of CPython's Lib/test/_test_multiprocessing.py (_TestQueue) that apply, many
// producers and consumers, and process death (kill -9) at every critical point.
//
// Children are fork()ed and end with _exit; they report through their exit status and through
// counters in shared memory. The last cases start children with tandem::mp::process (spawn).
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/detail/shm_queue.hpp>
#include <tandem/mp/joinable_queue.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/queue.hpp>
#include <tandem/mp/simple_queue.hpp>
#include <tandem/mp/wait.hpp>

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tandem::mp::detail::shm_queue;

namespace {

using clock_type = std::chrono::steady_clock;

// -- children ---------------------------------------------------------------------------------

// Forks a child that runs `fn` and ends with _exit(fn()) (70 when it throws).
pid_t fork_child(const std::function<int()>& fn) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // doctest's crash handlers would report a child's death as the parent's test failing.
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTERM}) ::signal(sig, SIG_DFL);
    int code = 70;
    try {
      code = fn();
    } catch (...) {
    }
    ::_exit(code);
  }
  return pid;
}

// The child's exit code, or -N when signal N killed it.
int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

void kill_child(pid_t pid) {
  ::kill(pid, SIGKILL);
  CHECK(wait_child(pid) == -SIGKILL);
}

// An array of counters in shared memory, visible to every child forked after it.
template <class T = std::uint64_t>
class shared_cells {
public:
  explicit shared_cells(std::size_t n) : n_(n) {
    void* mem = ::mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::bad_alloc();
    cells_ = static_cast<std::atomic<T>*>(mem);
    for (std::size_t i = 0; i < n; ++i) ::new (&cells_[i]) std::atomic<T>(0);
  }
  shared_cells(const shared_cells&) = delete;
  shared_cells& operator=(const shared_cells&) = delete;
  ~shared_cells() { ::munmap(cells_, bytes()); }

  std::atomic<T>& operator[](std::size_t i) { return cells_[i]; }

private:
  std::size_t bytes() const { return n_ * sizeof(std::atomic<T>); }
  std::size_t n_;
  std::atomic<T>* cells_;
};

// Waits (polling) until `cell` holds at least `n`.
bool reaches(std::atomic<std::uint64_t>& cell, std::uint64_t n) {
  return tandem::test::wait_until([&] { return cell.load() >= n; });
}

// -- items of the byte core: self-checking ----------------------------------------------------

// An item: [producer:4][seq:4][pattern of the producer]. A torn, shifted or mixed copy breaks
// the pattern. The pattern depends only on the producer and the offset, so a producer builds its
// items by copying a prefix of one reference buffer, and a consumer checks them with memcmp:
// both spend their time in the queue, where the kills should land.
constexpr std::size_t max_item = 200'000;

const std::vector<std::byte>& reference(std::uint32_t producer) {
  static std::vector<std::vector<std::byte>> refs;
  while (refs.size() <= producer) {
    std::vector<std::byte> r(max_item);
    auto p = static_cast<std::uint32_t>(refs.size());
    for (std::size_t i = 0; i < r.size(); ++i)
      r[i] = static_cast<std::byte>((p * 31 + i * 7 + i / 251) & 0xff);
    refs.push_back(std::move(r));
  }
  return refs[producer];
}

std::vector<std::byte> make_item(std::uint32_t producer, std::uint32_t seq, std::size_t n) {
  const auto& ref = reference(producer);
  std::vector<std::byte> v(ref.begin(), ref.begin() + static_cast<std::ptrdiff_t>(
                                                          std::clamp<std::size_t>(n, 8, max_item)));
  std::memcpy(v.data(), &producer, 4);
  std::memcpy(v.data() + 4, &seq, 4);
  return v;
}

bool item_is_whole(std::span<const std::byte> v) {
  if (v.size() < 8 || v.size() > max_item) return false;
  std::uint32_t producer = 0;
  std::memcpy(&producer, v.data(), 4);
  if (producer > 1000) return false;
  return std::memcmp(v.data() + 8, reference(producer).data() + 8, v.size() - 8) == 0;
}

std::optional<std::vector<std::byte>> get_bytes(shm_queue& q, tandem::timeout t) {
  std::vector<std::byte> out;
  auto sink = [](void* ctx, std::span<const std::byte> a, std::span<const std::byte> b) {
    auto& v = *static_cast<std::vector<std::byte>*>(ctx);
    v.insert(v.end(), a.begin(), a.end());
    v.insert(v.end(), b.begin(), b.end());
  };
  if (!q.get(sink, &out, t, nullptr, false)) return std::nullopt;
  return out;
}

// -- targets of spawn children ----------------------------------------------------------------

void spawn_producer(tandem::mp::queue<int> q, int first, int count) {
  for (int i = first; i < first + count; ++i) q.put(i);
}

void spawn_worker(tandem::mp::joinable_queue<int> jobs, tandem::mp::queue<int> results) {
  for (;;) {
    int job = jobs.get();
    if (job < 0) {
      jobs.task_done();
      return;
    }
    results.put(job * job);
    jobs.task_done();
  }
}

void spawn_string_producer(tandem::mp::simple_queue<std::string> q, std::string text) {
  q.put(text);
  q.put(text + text);
}

} // namespace

// -- CPython's _TestQueue -------------------------------------------------------------------------

TEST_SUITE("mp queue across processes") {

  TEST_CASE("put fills a bounded queue that a child then drains (test_put)") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut{6};
    shared_cells<> events{2}; // 0: child may start, 1: parent may continue
    pid_t child = fork_child([&] {
      reaches(events[0], 1);
      for (int i = 0; i < 6; ++i) (void)sut.get();
      events[1] = 1;
      return 0;
    });

    sut.put(1);
    sut.put(2, tandem::forever);
    sut.put(3, 10s);
    sut.put_nowait(4);
    CHECK(sut.put(5, 0s));
    sut.put_nowait(6);
    CHECK_FALSE(sut.empty());
    CHECK(sut.full());
    CHECK(sut.qsize() == 6);
    CHECK_FALSE(sut.put(7, 0s));
    CHECK_THROWS_AS(sut.put_nowait(7), tandem::full_error);
    auto start = clock_type::now();
    CHECK_FALSE(sut.put(7, 100ms));
    CHECK(clock_type::now() - start >= 60ms);
    events[0] = 1;
    CHECK(reaches(events[1], 1));
    CHECK(wait_child(child) == 0);

    CHECK(sut.empty());
    CHECK_FALSE(sut.full());
  }

  TEST_CASE("get takes what a child put in every form (test_get)") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut;
    shared_cells<> events{1};
    pid_t child = fork_child([&] {
      reaches(events[0], 1);
      for (int i = 2; i <= 6; ++i) sut.put(i);
      return 0;
    });

    CHECK(sut.empty());
    events[0] = 1;
    CHECK(wait_child(child) == 0); // every put is in shared memory once the child is gone

    CHECK(sut.qsize() == 5);
    CHECK(sut.get() == 2);
    CHECK(sut.get(tandem::forever) == 3);
    CHECK(sut.get(10s) == 4);
    CHECK(sut.get(0s) == 5);
    CHECK(sut.get_nowait() == 6);
    CHECK(sut.empty());
    CHECK_FALSE(sut.get(0s).has_value());
    CHECK_THROWS_AS((void)sut.get_nowait(), tandem::empty_error);
    auto start = clock_type::now();
    CHECK_FALSE(sut.get(100ms).has_value());
    CHECK(clock_type::now() - start >= 60ms);
  }

  TEST_CASE("a forked child adds to what its parent put and order is kept (test_fork)") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut;
    for (int i = 0; i < 10; ++i) sut.put(i);
    pid_t child = fork_child([&] {
      for (int i = 10; i < 20; ++i) sut.put(i);
      return 0;
    });
    CHECK(wait_child(child) == 0);
    std::vector<int> got;
    for (int i = 0; i < 20; ++i) got.push_back(sut.get(5s).value_or(-1));
    std::vector<int> expected;
    for (int i = 0; i < 20; ++i) expected.push_back(i);
    CHECK(got == expected);
    CHECK_FALSE(sut.get(0s).has_value());
  }

  TEST_CASE("qsize counts puts and gets of every process (test_qsize)") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut;
    CHECK(sut.qsize() == 0);
    sut.put(1);
    CHECK(sut.qsize() == 1);
    CHECK(wait_child(fork_child([&] {
            sut.put(5);
            return sut.qsize() == 2 ? 0 : 1;
          })) == 0);
    CHECK(sut.qsize() == 2);
    CHECK(wait_child(fork_child([&] {
            (void)sut.get();
            return 0;
          })) == 0);
    CHECK(sut.qsize() == 1);
    (void)sut.get();
    CHECK(sut.qsize() == 0);
  }

  TEST_CASE("workers in other processes call task_done and join returns (test_task_done)") {
    tandem::test::watchdog guard{20s};
    tandem::mp::joinable_queue<int> sut;
    shared_cells<> processed{1};
    std::vector<pid_t> workers;
    for (int w = 0; w < 4; ++w)
      workers.push_back(fork_child([&] {
        for (;;) {
          int job = sut.get();
          if (job < 0) {
            sut.task_done();
            return 0;
          }
          processed[0].fetch_add(1);
          sut.task_done();
        }
      }));
    for (int i = 0; i < 10; ++i) sut.put(i);
    CHECK(sut.join(10s));
    CHECK(processed[0] == 10);
    for (int w = 0; w < 4; ++w) sut.put(-1);
    for (auto pid : workers) CHECK(wait_child(pid) == 0);
    CHECK(sut.join(0s));
    CHECK_THROWS_AS(sut.task_done(), tandem::value_error);
  }

  TEST_CASE("a get with a timeout waits at least its timeout (test_timeout)") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut;
    // In a child too: the deadline is monotonic in every process.
    CHECK(wait_child(fork_child([&] {
            auto start = clock_type::now();
            bool empty = !sut.get(200ms).has_value();
            auto took = clock_type::now() - start;
            return empty && took >= 120ms && took < 2s ? 0 : 1;
          })) == 0);
    auto start = clock_type::now();
    CHECK_FALSE(sut.get(200ms).has_value());
    CHECK(clock_type::now() - start >= 120ms);
  }

  TEST_CASE("a closed handle refuses put and get with value_error (test_closed_queue)") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> q;
    tandem::mp::joinable_queue<int> jq;
    q.close();
    jq.close();
    CHECK_THROWS_AS(q.put(1), tandem::value_error);
    CHECK_THROWS_AS((void)q.get(), tandem::value_error);
    CHECK_THROWS_AS(jq.put(1), tandem::value_error);
    CHECK_THROWS_AS((void)jq.get(), tandem::value_error);
  }

  TEST_CASE("close in a child leaves the parent's handle and the items alone") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut;
    CHECK(wait_child(fork_child([&] {
            sut.put(1);
            sut.close();
            try {
              sut.put(2);
              return 1;
            } catch (const tandem::value_error&) {
              return 0;
            }
          })) == 0);
    CHECK_FALSE(sut.closed());
    CHECK(sut.get(0s) == 1);
    sut.put(3);
    CHECK(sut.get() == 3);
  }

  // -- many processes ---------------------------------------------------------------------------

  TEST_CASE("many producer and consumer processes deliver every item exactly once in order") {
    tandem::test::watchdog guard{60s};
    constexpr int producers = 4;
    constexpr int consumers = 3;
    constexpr int per_producer = 5000;
    tandem::mp::queue<std::uint64_t> sut{tandem::mp::queue_options{100, 4096}};
    shared_cells<std::uint32_t> seen{producers * per_producer};
    shared_cells<> out_of_order{1};
    std::vector<pid_t> pids;
    for (int c = 0; c < consumers; ++c)
      pids.push_back(fork_child([&] {
        std::array<std::int64_t, producers> last;
        last.fill(-1);
        for (;;) {
          std::uint64_t v = 0;
          try {
            v = sut.get();
          } catch (const tandem::shut_down_error&) {
            return 0;
          }
          auto p = static_cast<std::size_t>(v >> 32);
          auto i = static_cast<std::int64_t>(v & 0xffffffff);
          if (p >= producers || i >= per_producer) return 2;
          if (i <= last[p]) out_of_order[0].fetch_add(1);
          last[p] = i;
          seen[p * per_producer + static_cast<std::size_t>(i)].fetch_add(1);
        }
      }));
    std::vector<pid_t> producer_pids;
    for (int p = 0; p < producers; ++p)
      producer_pids.push_back(fork_child([&, p] {
        for (int i = 0; i < per_producer; ++i)
          sut.put((static_cast<std::uint64_t>(p) << 32) | static_cast<std::uint64_t>(i));
        return 0;
      }));
    for (auto pid : producer_pids) CHECK(wait_child(pid) == 0);
    sut.shutdown();
    for (auto pid : pids) CHECK(wait_child(pid) == 0);

    int missing = 0;
    int duplicated = 0;
    for (std::size_t i = 0; i < producers * per_producer; ++i) {
      missing += seen[i] == 0 ? 1 : 0;
      duplicated += seen[i] > 1 ? 1 : 0;
    }
    CHECK(missing == 0);
    CHECK(duplicated == 0);
    CHECK(out_of_order[0] == 0);
    CHECK(sut.empty());
  }

  TEST_CASE("a child that puts and exits at once loses nothing") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut;
    std::vector<pid_t> pids;
    for (int c = 0; c < 20; ++c)
      pids.push_back(fork_child([&, c] {
        for (int i = 0; i < 50; ++i) sut.put(c * 1000 + i);
        return 0; // _exit right after the last put: no feeder thread to flush
      }));
    for (auto pid : pids) CHECK(wait_child(pid) == 0);
    CHECK(sut.qsize() == 1000);
    int got = 0;
    while (sut.get(0s)) ++got;
    CHECK(got == 1000);
  }

  TEST_CASE("shutdown in one process wakes a getter and a putter blocked in others") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> empty_one;
    tandem::mp::queue<int> full_one{1};
    full_one.put(1);
    auto outcome = [](const std::function<void()>& fn) {
      try {
        fn();
      } catch (const tandem::shut_down_error&) {
        return 0;
      }
      return 1;
    };
    pid_t getter = fork_child([&] { return outcome([&] { (void)empty_one.get(); }); });
    pid_t putter = fork_child([&] { return outcome([&] { full_one.put(2); }); });
    std::this_thread::sleep_for(100ms); // lets them block; the outcome does not depend on it
    empty_one.shutdown();
    full_one.shutdown(true);
    CHECK(wait_child(getter) == 0);
    CHECK(wait_child(putter) == 0);
    CHECK(full_one.empty());
  }

  // -- process death ----------------------------------------------------------------------------

  TEST_CASE("a consumer killed inside get leaves the item in the queue and nothing wedged") {
    tandem::test::watchdog guard{20s};
    shm_queue sut{tandem::mp::queue_options{}};
    auto item = make_item(1, 1, 100);
    REQUIRE(sut.put(item, tandem::forever, nullptr, false));
    // The sink runs with the consumers' mutex held: the child dies holding it, mid-get.
    pid_t child = fork_child([&] {
      auto die = [](void*, std::span<const std::byte>, std::span<const std::byte>) {
        ::kill(::getpid(), SIGKILL);
      };
      (void)sut.get(die, nullptr, tandem::forever, nullptr, false);
      return 1;
    });
    CHECK(wait_child(child) == -SIGKILL);

    auto start = clock_type::now();
    auto got = get_bytes(sut, 2s);
    CHECK(clock_type::now() - start < 1s);
    REQUIRE(got.has_value());
    CHECK(*got == item);
    CHECK(sut.empty());
    CHECK(sut.put(item, 1s, nullptr, false));
    CHECK(get_bytes(sut, 1s) == item);
  }

  TEST_CASE("a producer that dies in the middle of copying an item never publishes it") {
    tandem::test::watchdog guard{20s};
    shm_queue sut{tandem::mp::queue_options{}};
    REQUIRE(sut.put(make_item(1, 1, 64), tandem::forever, nullptr, false));
    // The item's second page is inaccessible: the copy into the ring faults half-way, with the
    // producers' mutex held and part of the bytes written.
    pid_t child = fork_child([&] {
      auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
      void* mem =
          ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      ::mprotect(static_cast<std::byte*>(mem) + page, page, PROT_NONE);
      std::span<const std::byte> half_readable{static_cast<std::byte*>(mem), 2 * page};
      (void)sut.put(half_readable, tandem::forever, nullptr, false);
      return 1;
    });
    CHECK(wait_child(child) == -SIGSEGV);

    CHECK(sut.qsize() == 1);
    auto start = clock_type::now();
    CHECK(sut.put(make_item(1, 2, 64), 2s, nullptr, false));
    CHECK(clock_type::now() - start < 1s);
    auto first = get_bytes(sut, 0s);
    auto second = get_bytes(sut, 0s);
    REQUIRE(first.has_value());
    REQUIRE(second.has_value());
    CHECK(*first == make_item(1, 1, 64));
    CHECK(*second == make_item(1, 2, 64));
    CHECK_FALSE(get_bytes(sut, 0s).has_value());
  }

  TEST_CASE("producers killed at random moments leave only whole items and a working queue") {
    tandem::test::watchdog guard{90s};
    constexpr int kills = 40;
    shm_queue sut{tandem::mp::queue_options{0, std::size_t{1} << 20}};
    // committed[p]: how many items producer p's put() returned for.
    shared_cells<> committed{kills + 1};
    shared_cells<> consumed{3}; // 0: items, 1: torn items, 2: consumer finished
    pid_t consumer = fork_child([&] {
      for (;;) {
        std::optional<std::vector<std::byte>> v;
        try {
          v = get_bytes(sut, tandem::forever);
        } catch (const tandem::shut_down_error&) {
          consumed[2] = 1;
          return 0;
        }
        if (!v || !item_is_whole(*v)) consumed[1].fetch_add(1);
        consumed[0].fetch_add(1);
      }
    });
    for (std::uint32_t p = 0; p <= kills; ++p) (void)reference(p); // built before the forks
    std::mt19937 rng{42};
    std::uniform_int_distribution<int> delay_us{0, 3000};
    for (int p = 0; p < kills; ++p) {
      pid_t producer = fork_child([&, p] {
        std::mt19937 sizes{static_cast<unsigned>(p)};
        std::uniform_int_distribution<std::size_t> size{8, 200'000};
        auto item = make_item(static_cast<std::uint32_t>(p), 0, max_item);
        for (std::uint32_t seq = 0;; ++seq) {
          std::memcpy(item.data() + 4, &seq, 4);
          (void)sut.put(std::span{item}.first(size(sizes)), tandem::forever, nullptr, false);
          committed[static_cast<std::size_t>(p)].fetch_add(1);
        }
        return 0;
      });
      std::this_thread::sleep_for(std::chrono::microseconds{delay_us(rng)});
      kill_child(producer);
    }
    // After the killings, a producer that exits normally still gets its items through.
    pid_t last = fork_child([&] {
      for (std::uint32_t seq = 0; seq < 100; ++seq) {
        if (!sut.put(make_item(kills, seq, 1000), 5s, nullptr, false)) return 1;
        committed[kills].fetch_add(1);
      }
      return 0;
    });
    CHECK(wait_child(last) == 0);
    sut.shutdown(false);
    CHECK(wait_child(consumer) == 0);

    std::uint64_t put_total = 0;
    for (std::size_t p = 0; p <= kills; ++p) put_total += committed[p];
    // A producer killed after its item was published but before it counted it adds one.
    MESSAGE("consumed " << consumed[0].load() << " put " << put_total);
    CHECK(consumed[0] >= put_total);
    CHECK(consumed[0] <= put_total + kills);
    CHECK(consumed[1] == 0);
    CHECK(consumed[2] == 1);
  }

  TEST_CASE("consumers killed at random moments never wedge the queue or tear an item") {
    tandem::test::watchdog guard{90s};
    constexpr int kills = 40;
    constexpr std::uint32_t items = 4000;
    shm_queue sut{tandem::mp::queue_options{0, std::size_t{1} << 20}};
    shared_cells<> taken{2}; // 0: items the killed consumers returned from get, 1: torn
    for (std::uint32_t p = 0; p < 2; ++p) (void)reference(p); // built before the forks
    pid_t producer = fork_child([&] {
      std::mt19937 sizes{3};
      std::uniform_int_distribution<std::size_t> size{8, 100'000};
      for (std::uint32_t seq = 0; seq < items; ++seq)
        if (!sut.put(make_item(1, seq, size(sizes)), 20s, nullptr, false)) return 1;
      return 0;
    });
    std::mt19937 rng{7};
    std::uniform_int_distribution<int> delay_us{0, 2000};
    for (int c = 0; c < kills; ++c) {
      pid_t consumer = fork_child([&] {
        for (;;) {
          auto v = get_bytes(sut, tandem::forever);
          if (!v || !item_is_whole(*v)) taken[1].fetch_add(1);
          taken[0].fetch_add(1);
        }
        return 0;
      });
      std::this_thread::sleep_for(std::chrono::microseconds{delay_us(rng)});
      kill_child(consumer);
    }
    // The producer may still be waiting for room: drain until it is done, then the rest.
    std::uint64_t left = 0;
    auto drain = [&](tandem::timeout t) {
      while (auto v = get_bytes(sut, t)) {
        if (!item_is_whole(*v)) taken[1].fetch_add(1);
        ++left;
      }
    };
    while (taken[0] + left < items - kills && ::waitpid(producer, nullptr, WNOHANG) == 0)
      drain(10ms);
    drain(100ms);
    CHECK(wait_child(producer) == 0);
    drain(0s);
    MESSAGE("taken by killed consumers " << taken[0].load() << ", then " << left);
    // A consumer killed after its get returned and before it counted loses that one item.
    CHECK(taken[0] + left <= items);
    CHECK(taken[0] + left + kills >= items);
    CHECK(taken[1] == 0);
    CHECK(sut.qsize() == 0);
  }

  TEST_CASE("a getter whose producers all died returns at its timeout") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut{2};
    std::vector<pid_t> producers;
    for (int p = 0; p < 3; ++p)
      producers.push_back(fork_child([&] {
        for (;;) sut.put(1); // blocks on the full queue; killed there
        return 0;
      }));
    std::this_thread::sleep_for(50ms);
    for (auto pid : producers) kill_child(pid);
    while (sut.get(0s)) {
    }
    auto start = clock_type::now();
    CHECK_FALSE(sut.get(300ms).has_value());
    auto took = clock_type::now() - start;
    CHECK(took >= 180ms);
    CHECK(took < 3s);
  }

  TEST_CASE("a putter whose consumers all died returns at its timeout") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut{1};
    std::vector<pid_t> consumers;
    for (int c = 0; c < 3; ++c)
      consumers.push_back(fork_child([&] {
        for (;;) (void)sut.get();
        return 0;
      }));
    std::this_thread::sleep_for(50ms); // lets them block in get; killed there
    for (auto pid : consumers) kill_child(pid);
    sut.put(1);
    auto start = clock_type::now();
    CHECK_FALSE(sut.put(2, 300ms));
    auto took = clock_type::now() - start;
    CHECK(took >= 180ms);
    CHECK(took < 3s);
    CHECK(sut.get(0s) == 1);
  }

  TEST_CASE("waiters killed while asleep do not stop the wake-ups of the living") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut;
    for (int c = 0; c < 3; ++c) {
      pid_t sleeper = fork_child([&] {
        (void)sut.get();
        return 0;
      });
      std::this_thread::sleep_for(20ms);
      kill_child(sleeper);
    }
    pid_t getter = fork_child([&] {
      auto v = sut.get(10s);
      return v == 42 ? 0 : 1;
    });
    std::this_thread::sleep_for(50ms);
    auto start = clock_type::now();
    sut.put(42);
    CHECK(wait_child(getter) == 0);
    CHECK(clock_type::now() - start < 2s);
  }

  TEST_CASE("wait in one process wakes when a child puts into the queue") {
    tandem::test::watchdog guard{20s};
    tandem::mp::queue<int> sut;
    std::vector<tandem::mp::waitable> objects{sut};
    pid_t child = fork_child([&] {
      std::this_thread::sleep_for(50ms); // lets the wait block; the outcome does not depend on it
      sut.put(7);
      return 0;
    });
    auto start = clock_type::now();
    auto ready = tandem::mp::wait(objects, 10s);
    CHECK(ready == std::vector<std::size_t>{0});
    CHECK(clock_type::now() - start < 5s);
    CHECK(wait_child(child) == 0);
    CHECK(sut.get(0s) == 7);
  }

  // -- mp::process ------------------------------------------------------------------------------

  TEST_CASE("spawn children receive queues as arguments and their items arrive") {
    tandem::test::watchdog guard{60s};
    tandem::mp::queue<int> sut;
    std::vector<tandem::mp::process> children;
    for (int c = 0; c < 3; ++c)
      children.emplace_back(tandem::mp::process::options{.method = tandem::mp::start_method::spawn},
                            spawn_producer, sut.clone(), c * 100, 100);
    for (auto& p : children) p.start();
    for (auto& p : children) {
      CHECK(p.join(30s));
      CHECK(p.exitcode() == 0);
    }
    std::vector<int> got;
    while (auto v = sut.get(0s)) got.push_back(*v);
    std::sort(got.begin(), got.end());
    std::vector<int> expected;
    for (int i = 0; i < 300; ++i) expected.push_back(i);
    CHECK(got == expected);
  }

  TEST_CASE("spawn workers call task_done on a joinable queue and join returns") {
    tandem::test::watchdog guard{60s};
    tandem::mp::joinable_queue<int> jobs;
    tandem::mp::queue<int> results;
    std::vector<tandem::mp::process> workers;
    for (int w = 0; w < 2; ++w)
      workers.emplace_back(tandem::mp::process::options{.method = tandem::mp::start_method::spawn},
                           spawn_worker, jobs, results);
    for (auto& p : workers) p.start();
    for (int i = 1; i <= 20; ++i) jobs.put(i);
    CHECK(jobs.join(30s));
    int sum = 0;
    for (int i = 0; i < 20; ++i) sum += results.get(5s).value_or(-100000);
    CHECK(sum == 2870);
    for (int w = 0; w < 2; ++w) jobs.put(-1);
    for (auto& p : workers) {
      CHECK(p.join(30s));
      CHECK(p.exitcode() == 0);
    }
    CHECK(jobs.join(0s));
  }

  TEST_CASE("a spawn child sends serialized strings through a simple queue") {
    tandem::test::watchdog guard{60s};
    tandem::mp::simple_queue<std::string> sut;
    tandem::mp::process p{tandem::mp::process::options{.method = tandem::mp::start_method::spawn},
                          spawn_string_producer, sut.clone(), std::string(3000, 'x')};
    p.start();
    CHECK(p.join(30s));
    CHECK(p.exitcode() == 0);
    CHECK(sut.get(1s) == std::string(3000, 'x'));
    CHECK(sut.get(1s) == std::string(6000, 'x'));
    CHECK(sut.empty());
  }
}
