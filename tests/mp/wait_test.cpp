// tandem::mp::wait over connections, descriptors, objects with fileno() and futex words, in one
// process with threads (process sentinels are tested with the process tests).
#include "support/watchdog.hpp"

#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/pipe.hpp>
#include <tandem/mp/wait.hpp>

#include <doctest/doctest.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::vector<std::byte> one_byte() {
  return {std::byte{1}};
}

// An eventfd wrapped in a type with fileno(), as a user's own pollable object would be.
class event_object {
public:
  event_object() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) { REQUIRE(fd_ >= 0); }
  event_object(const event_object&) = delete;
  event_object& operator=(const event_object&) = delete;
  ~event_object() { ::close(fd_); }

  int fileno() const { return fd_; }
  void set() {
    std::uint64_t one = 1;
    REQUIRE(::write(fd_, &one, sizeof one) == sizeof one);
  }

private:
  int fd_;
};

// A flag that signals through a futex word, as a shared-memory queue would.
struct flag {
  std::atomic<std::uint32_t> word{0};
  std::atomic<bool> up{false};

  void raise() {
    up.store(true, std::memory_order_release);
    word.fetch_add(1, std::memory_order_release);
    tandem::detail::futex_wake_all(word);
  }

  tandem::mp::waitable waitable() const {
    return tandem::mp::waitable::on_word(
        word, [this] { return up.load(std::memory_order_acquire); }, false, this);
  }
};

} // namespace

TEST_SUITE("mp wait") {

  TEST_CASE("wait returns the ready connections in the order given") {
    tandem::test::watchdog guard{10s};
    auto [a1, b1] = tandem::mp::pipe();
    auto [a2, b2] = tandem::mp::pipe();
    auto [a3, b3] = tandem::mp::pipe();
    b3.send_bytes(one_byte());
    b1.send_bytes(one_byte());

    std::vector<tandem::mp::waitable> sut{a1, a2, a3};
    auto ready = tandem::mp::wait(sut, 1s);

    CHECK(ready == std::vector<std::size_t>{0, 2});
    CHECK(sut[2].object() == &a3);
    CHECK(sut[0].fd() == a1.fileno());
  }

  TEST_CASE("wait times out with an empty result after its timeout") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();

    auto start = std::chrono::steady_clock::now();
    auto ready = tandem::mp::wait({a}, 100ms);
    auto waited = std::chrono::steady_clock::now() - start;

    CHECK(ready.empty());
    CHECK(waited >= 60ms);
    CHECK(waited < 1s);
  }

  TEST_CASE("a zero or negative timeout polls once") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    flag f;

    auto start = std::chrono::steady_clock::now();
    CHECK(tandem::mp::wait({a, f.waitable()}, 0s).empty());
    CHECK(tandem::mp::wait({a}, -3s).empty());
    CHECK(tandem::mp::wait({f.waitable()}, std::chrono::steady_clock::now() - 1s).empty());
    CHECK(std::chrono::steady_clock::now() - start < 1s);

    b.send_bytes(one_byte());
    f.raise();
    CHECK(tandem::mp::wait({a, f.waitable()}, 0s) == std::vector<std::size_t>{0, 1});
  }

  TEST_CASE("end of file makes a connection ready") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    writer.close();

    CHECK(tandem::mp::wait({reader}, 1s) == std::vector<std::size_t>{0});
  }

  TEST_CASE("wait wakes when another thread sends") {
    tandem::test::watchdog guard{10s};
    auto [a1, b1] = tandem::mp::pipe();
    auto [a2, b2] = tandem::mp::pipe();

    std::thread sender{[&conn = b2] {
      std::this_thread::sleep_for(50ms); // lets wait() block first; either order passes
      conn.send_bytes(one_byte());
    }};
    auto ready = tandem::mp::wait({a1, a2});
    sender.join();

    CHECK(ready == std::vector<std::size_t>{1});
  }

  TEST_CASE("descriptors and objects with fileno are waitable") {
    tandem::test::watchdog guard{10s};
    event_object e1;
    event_object e2;

    std::vector<tandem::mp::waitable> sut{e1, tandem::mp::waitable{e2.fileno()}};
    CHECK(tandem::mp::wait(sut, 0s).empty());
    e2.set();
    CHECK(tandem::mp::wait(sut, 1s) == std::vector<std::size_t>{1});
    CHECK(sut[0].object() == &e1);
    CHECK(sut[1].object() == nullptr);
    e1.set();
    CHECK(tandem::mp::wait(sut, 1s) == std::vector<std::size_t>{0, 1});
  }

  TEST_CASE("a word waitable wakes when the word changes from another thread") {
    tandem::test::watchdog guard{10s};
    flag f;

    std::thread raiser{[&f] {
      std::this_thread::sleep_for(50ms); // lets wait() sleep on the word first
      f.raise();
    }};
    auto start = std::chrono::steady_clock::now();
    auto ready = tandem::mp::wait({f.waitable()}, 5s);
    raiser.join();

    CHECK(ready == std::vector<std::size_t>{0});
    CHECK(std::chrono::steady_clock::now() - start < 4s);
  }

  TEST_CASE("a mix of words and connections sees whichever becomes ready") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    flag f1;
    flag f2;

    std::thread raiser{[&f2] {
      std::this_thread::sleep_for(30ms); // lets wait() start slicing first
      f2.raise();
    }};
    auto ready = tandem::mp::wait({f1.waitable(), a, f2.waitable()}, 5s);
    raiser.join();
    CHECK(ready == std::vector<std::size_t>{2});

    std::thread sender{[&conn = b] {
      std::this_thread::sleep_for(30ms);
      conn.send_bytes(one_byte());
    }};
    ready = tandem::mp::wait({f1.waitable(), a}, 5s);
    sender.join();
    CHECK(ready == std::vector<std::size_t>{1});
  }

  TEST_CASE("several words without descriptors are all watched") {
    tandem::test::watchdog guard{10s};
    flag f1;
    flag f2;

    std::thread raiser{[&f2] {
      std::this_thread::sleep_for(30ms);
      f2.raise();
    }};
    auto ready = tandem::mp::wait({f1.waitable(), f2.waitable()}, 5s);
    raiser.join();

    CHECK(ready == std::vector<std::size_t>{1});
  }

  TEST_CASE("a stop request ends a blocked wait promptly with an empty result") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    flag f;
    for (int kind = 0; kind < 3; ++kind) {
      CAPTURE(kind);
      std::vector<tandem::mp::waitable> sut;
      if (kind != 1) sut.emplace_back(a); // 0: a connection, 1: one word, 2: both
      if (kind != 0) sut.push_back(f.waitable());
      std::stop_source source;
      std::vector<std::size_t> ready{99};

      std::thread waiter{[&] { ready = tandem::mp::wait(sut, source.get_token()); }};
      std::this_thread::sleep_for(30ms); // lets the waiter block; not needed to pass
      auto start = std::chrono::steady_clock::now();
      source.request_stop();
      waiter.join();

      CHECK(ready.empty());
      CHECK(std::chrono::steady_clock::now() - start < 2s);
    }
    std::stop_source stopped;
    stopped.request_stop();
    b.send_bytes(one_byte());
    CHECK(tandem::mp::wait({a}, stopped.get_token(), 1s).empty());
    CHECK(tandem::mp::wait({a}, std::stop_token{}, 1s) == std::vector<std::size_t>{0});
  }

  TEST_CASE("closed write-only and invalid objects are refused") {
    auto [reader, writer] = tandem::mp::pipe(false);
    tandem::mp::connection closed;

    CHECK_THROWS_AS(tandem::mp::waitable{writer}, tandem::usage_error);
    CHECK_THROWS_AS(tandem::mp::waitable{closed}, tandem::usage_error);
    CHECK_THROWS_AS(tandem::mp::waitable{-1}, tandem::value_error);
    CHECK_THROWS_AS(tandem::mp::wait({tandem::mp::waitable{1 << 20}}, 0s), tandem::value_error);
    CHECK_THROWS_AS(tandem::mp::waitable::on_word(std::atomic<std::uint32_t>{}, {}),
                    tandem::value_error);
  }

  TEST_CASE("an empty list waits out its timeout") {
    tandem::test::watchdog guard{10s};
    auto start = std::chrono::steady_clock::now();

    auto ready = tandem::mp::wait(std::span<const tandem::mp::waitable>{}, 50ms);

    CHECK(ready.empty());
    CHECK(std::chrono::steady_clock::now() - start >= 30ms);
  }
}
