// tandem::mp::queue, joinable_queue, simple_queue and their byte core, in one process with
// threads (the cross-process and process-death cases are in tests/processes).
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/detail/shm_queue.hpp>
#include <tandem/mp/joinable_queue.hpp>
#include <tandem/mp/queue.hpp>
#include <tandem/mp/simple_queue.hpp>
#include <tandem/mp/wait.hpp>

#include <doctest/doctest.h>

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tandem::mp::detail::shm_queue;

namespace {

using clock_type = std::chrono::steady_clock;

// Items of the byte core: a length-dependent pattern that a torn or shifted copy would break.
std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((seed * 131 + i * 7) & 0xff);
  return v;
}

bool put_bytes(shm_queue& q, const std::vector<std::byte>& item,
               tandem::timeout t = tandem::forever, bool nowait = false) {
  return q.put(item, t, nullptr, nowait);
}

std::optional<std::vector<std::byte>> get_bytes(shm_queue& q, tandem::timeout t = tandem::forever,
                                                bool nowait = false) {
  std::vector<std::byte> out;
  auto sink = [](void* ctx, std::span<const std::byte> a, std::span<const std::byte> b) {
    auto& v = *static_cast<std::vector<std::byte>*>(ctx);
    v.insert(v.end(), a.begin(), a.end());
    v.insert(v.end(), b.begin(), b.end());
  };
  if (!q.get(sink, &out, t, nullptr, nowait)) return std::nullopt;
  return out;
}

struct point {
  std::int32_t x;
  double y;
  char tag[5];
};

} // namespace

TEST_SUITE("mp queue core") {

  TEST_CASE("variable-length items keep their bytes across many wrap-arounds") {
    tandem::test::watchdog guard{20s};
    shm_queue sut{tandem::mp::queue_options{0, 1024}};
    CHECK(sut.capacity() == 1024);
    std::mt19937 rng{7};
    std::uniform_int_distribution<std::size_t> len{0, 300};
    std::vector<std::vector<std::byte>> in_flight;
    std::size_t checked = 0;
    for (std::uint32_t i = 0; i < 5000; ++i) {
      auto item = pattern(len(rng), i);
      while (!put_bytes(sut, item, 0s)) {
        auto got = get_bytes(sut, 0s);
        REQUIRE(got.has_value());
        REQUIRE(*got == in_flight[checked]);
        ++checked;
      }
      in_flight.push_back(item);
    }
    while (auto got = get_bytes(sut, 0s)) {
      REQUIRE(*got == in_flight[checked]);
      ++checked;
    }
    CHECK(checked == in_flight.size());
    CHECK(sut.empty());
  }

  TEST_CASE("zero-length items exist and count") {
    shm_queue sut{tandem::mp::queue_options{}};
    put_bytes(sut, {});
    put_bytes(sut, {});
    CHECK(sut.qsize() == 2);
    auto a = get_bytes(sut, 0s);
    REQUIRE(a.has_value());
    CHECK(a->empty());
    CHECK(sut.qsize() == 1);
  }

  TEST_CASE("the buffer is rounded up to a power of two and bounded") {
    CHECK(shm_queue{tandem::mp::queue_options{0, 1000}}.capacity() == 1024);
    CHECK(shm_queue{tandem::mp::queue_options{0, 1}}.capacity() == shm_queue::min_buffer_bytes);
    CHECK_THROWS_AS(shm_queue(tandem::mp::queue_options{0, (std::size_t{1} << 30) + 1}),
                    tandem::value_error);
  }

  TEST_CASE("an item larger than the buffer is a value_error naming the option to raise") {
    shm_queue sut{tandem::mp::queue_options{0, 256}};
    CHECK(sut.max_item_size() == 248);
    CHECK(put_bytes(sut, pattern(248, 1), 0s));
    try {
      put_bytes(sut, pattern(249, 1));
      FAIL("no exception");
    } catch (const tandem::value_error& e) {
      CHECK(std::string{e.what()}.find("buffer_bytes") != std::string::npos);
    }
    CHECK(sut.qsize() == 1);
  }

  TEST_CASE("a full buffer refuses put_nowait and times out a put even without an item limit") {
    tandem::test::watchdog guard{10s};
    shm_queue sut{tandem::mp::queue_options{0, 256}};
    CHECK(put_bytes(sut, pattern(200, 1)));
    CHECK_THROWS_AS(put_bytes(sut, pattern(100, 2), tandem::forever, true), tandem::full_error);
    auto start = clock_type::now();
    CHECK_FALSE(put_bytes(sut, pattern(100, 2), 30ms));
    CHECK(clock_type::now() - start >= 18ms);
    CHECK_FALSE(sut.full()); // full() is about maxsize, as Python's
    CHECK(get_bytes(sut).has_value());
    CHECK(put_bytes(sut, pattern(100, 2), 0s));
  }

  TEST_CASE("a sink that throws leaves the item in the queue in its place") {
    shm_queue sut{tandem::mp::queue_options{}};
    put_bytes(sut, pattern(10, 1));
    put_bytes(sut, pattern(10, 2));
    auto throwing = [](void*, std::span<const std::byte>, std::span<const std::byte>) {
      throw std::runtime_error("sink");
    };
    CHECK_THROWS_AS(sut.get(throwing, nullptr, 0s, nullptr, false), std::runtime_error);
    CHECK(sut.qsize() == 2);
    CHECK(get_bytes(sut) == pattern(10, 1));
  }

  TEST_CASE("a handle attached from the descriptor shares the queue") {
    tandem::test::watchdog guard{10s};
    shm_queue a{tandem::mp::queue_options{3}};
    auto b = shm_queue::attach(::dup(a.fd()));
    put_bytes(a, pattern(5, 9));
    CHECK(b.qsize() == 1);
    CHECK(b.maxsize() == 3);
    CHECK(get_bytes(b) == pattern(5, 9));
    b.shutdown(false);
    CHECK(a.is_shutdown());
  }

  TEST_CASE("attach refuses a descriptor that is not a queue") {
    auto seg = tandem::mp::detail::shm_segment::create(42, 4096);
    CHECK_THROWS_AS((void)shm_queue::attach(::dup(seg.fd())), tandem::segment_error);
  }
}

TEST_SUITE("mp queue") {

  TEST_CASE("a trivially copyable struct travels as its bytes") {
    tandem::mp::queue<point> sut;
    sut.put(point{7, 2.5, "abcd"});
    auto p = sut.get();
    CHECK(p.x == 7);
    CHECK(p.y == 2.5);
    CHECK(std::string{p.tag} == "abcd");
  }

  TEST_CASE("an item of another size is a bad_message_error and is consumed") {
    tandem::mp::queue<std::int64_t> wide;
    auto narrow = tandem::mp::queue<std::int32_t>::attach(::dup(wide.fd()));
    wide.put(1);
    wide.put(2);
    CHECK_THROWS_AS((void)narrow.get(), tandem::bad_message_error);
    CHECK(wide.qsize() == 1);
    CHECK(wide.get() == 2);
  }

  TEST_CASE("a closed handle refuses put and get while other handles work") {
    tandem::mp::queue<int> sut{4};
    auto other = tandem::mp::queue<int>::attach(::dup(sut.fd()));
    sut.put(1);
    CHECK_THROWS_AS(sut.join_thread(), tandem::usage_error);
    sut.close();
    sut.close();
    CHECK(sut.closed());
    CHECK_THROWS_AS(sut.put(2), tandem::value_error);
    CHECK_THROWS_AS((void)sut.get(), tandem::value_error);
    CHECK_THROWS_AS((void)sut.get(0s), tandem::value_error);
    CHECK_THROWS_AS((void)sut.get_nowait(), tandem::value_error);
    CHECK_THROWS_AS(sut.put_nowait(2), tandem::value_error);
    CHECK(sut.qsize() == 1);
    CHECK_NOTHROW(sut.join_thread());
    sut.cancel_join_thread();
    CHECK(other.get() == 1);
    other.put(3);
    CHECK(other.get() == 3);
  }

  TEST_CASE("a moved-from handle is closed and the new one works") {
    tandem::mp::queue<int> a;
    a.put(5);
    tandem::mp::queue<int> b{std::move(a)};
    CHECK(a.closed()); // NOLINT(bugprone-use-after-move)
    CHECK_FALSE(b.closed());
    CHECK(b.get() == 5);
  }

  TEST_CASE("a stop request ends a blocked get and a blocked put") {
    tandem::test::watchdog guard{10s};
    tandem::mp::queue<int> sut{1};
    std::stop_source stop;
    std::atomic<int> got_nothing{0};
    std::thread getter{[&] {
      tandem::mp::queue<int> empty_one;
      if (!empty_one.get(stop.get_token()).has_value()) ++got_nothing;
    }};
    sut.put(1);
    std::thread putter{[&] {
      if (!sut.put(stop.get_token(), 2)) ++got_nothing;
    }};
    std::this_thread::sleep_for(50ms); // lets both block; the outcome does not depend on it
    stop.request_stop();
    getter.join();
    putter.join();
    CHECK(got_nothing == 2);
    CHECK(sut.qsize() == 1);
    CHECK_FALSE(sut.get(stop.get_token(), 1s).has_value()); // stopped on entry: takes nothing
    CHECK(sut.qsize() == 1);
  }

  TEST_CASE("task_done and join count across handles") {
    tandem::test::watchdog guard{10s};
    tandem::mp::joinable_queue<int> sut;
    auto other = tandem::mp::joinable_queue<int>::attach(::dup(sut.fd()));
    for (int i = 0; i < 10; ++i) sut.put(i);
    CHECK(sut.unfinished_tasks() == 10);
    CHECK_FALSE(sut.join(10ms));
    std::thread worker{[&] {
      for (int i = 0; i < 10; ++i) {
        (void)other.get();
        other.task_done();
      }
    }};
    CHECK(sut.join(5s));
    worker.join();
    CHECK_THROWS_AS(sut.task_done(), tandem::value_error);
    CHECK(sut.unfinished_tasks() == 0);
  }

  TEST_CASE("many producer and consumer threads deliver every item exactly once in order") {
    tandem::test::watchdog guard{60s};
    constexpr int producers = 4;
    constexpr int consumers = 4;
    constexpr int per_producer = 20000;
    tandem::mp::queue<std::uint64_t> sut{tandem::mp::queue_options{64, 4096}};
    std::vector<std::atomic<int>> seen(producers * per_producer);
    std::atomic<int> out_of_order{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
      threads.emplace_back([&, p] {
        for (int i = 0; i < per_producer; ++i)
          sut.put((static_cast<std::uint64_t>(p) << 32) | static_cast<std::uint64_t>(i));
      });
    for (int c = 0; c < consumers; ++c)
      threads.emplace_back([&] {
        std::array<std::int64_t, producers> last;
        last.fill(-1);
        for (;;) {
          std::uint64_t v = 0;
          try {
            v = sut.get();
          } catch (const tandem::shut_down_error&) {
            return;
          }
          auto p = static_cast<int>(v >> 32);
          auto i = static_cast<std::int64_t>(v & 0xffffffff);
          // Per producer, one consumer sees increasing numbers (FIFO per producer).
          if (i <= last[static_cast<std::size_t>(p)]) ++out_of_order;
          last[static_cast<std::size_t>(p)] = i;
          seen[static_cast<std::size_t>(p * per_producer + i)].fetch_add(1);
        }
      });
    for (int p = 0; p < producers; ++p) threads[static_cast<std::size_t>(p)].join();
    sut.shutdown();
    for (auto& t : threads)
      if (t.joinable()) t.join();
    int missing = 0;
    int duplicates = 0;
    for (auto& s : seen) {
      missing += s.load() == 0 ? 1 : 0;
      duplicates += s.load() > 1 ? 1 : 0;
    }
    CHECK(missing == 0);
    CHECK(duplicates == 0);
    CHECK(out_of_order == 0);
    CHECK(sut.empty());
  }

  TEST_CASE("a simple queue puts gets and closes") {
    tandem::mp::simple_queue<int> sut;
    CHECK(sut.empty());
    sut.put(1);
    sut.put(2);
    CHECK(sut.qsize() == 2);
    CHECK(sut.get() == 1);
    CHECK(sut.get(0s) == 2);
    CHECK_FALSE(sut.get(0s).has_value());
    sut.close();
    CHECK_THROWS_AS(sut.put(3), tandem::value_error);
  }
}

TEST_SUITE("mp queue wait") {

  TEST_CASE("wait reports a queue ready once an item arrives or it shuts down") {
    tandem::test::watchdog guard{10s};
    tandem::mp::queue<int> sut;
    tandem::mp::queue<int> other;
    {
      std::vector<tandem::mp::waitable> objects{sut, other};
      CHECK(tandem::mp::wait(objects, 0s).empty());
      std::thread producer{[&] {
        std::this_thread::sleep_for(30ms); // lets the wait block; the outcome does not depend on it
        other.put(1);
      }};
      auto start = clock_type::now();
      auto ready = tandem::mp::wait(objects, 5s);
      producer.join();
      CHECK(clock_type::now() - start < 4s);
      CHECK(ready == std::vector<std::size_t>{1});
      CHECK(objects[1].object() == &other);
    }
    // With no waitable left, puts no longer wake anyone; a new waitable still works.
    sut.put(2);
    std::vector<tandem::mp::waitable> again{sut};
    CHECK(tandem::mp::wait(again, 0s) == std::vector<std::size_t>{0});
    (void)sut.get();
    other.shutdown();
    std::vector<tandem::mp::waitable> shut{other};
    CHECK(tandem::mp::wait(shut, 0s) == std::vector<std::size_t>{0}); // the item is still there
    (void)other.get();
    CHECK(tandem::mp::wait(shut, 0s) == std::vector<std::size_t>{0}); // get would throw
  }

  TEST_CASE("a single queue wait sleeps until a put") {
    tandem::test::watchdog guard{10s};
    tandem::mp::queue<int> sut;
    std::vector<tandem::mp::waitable> objects{sut};
    std::thread producer{[&] {
      std::this_thread::sleep_for(50ms); // lets the wait block; the outcome does not depend on it
      sut.put(1);
    }};
    auto start = clock_type::now();
    auto ready = tandem::mp::wait(objects, 5s);
    producer.join();
    CHECK(ready == std::vector<std::size_t>{0});
    CHECK(clock_type::now() - start < 4s);
  }
}
