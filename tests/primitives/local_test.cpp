// tandem::local<T>: the cases of CPython's Lib/test/test_threading_local.py that apply to C++,
// and the lifetime rules of the header (values die with their thread or with their local).
#include <tandem/local.hpp>

#include "support/watchdog.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Counts live instances, as the Python tests count weak references that are still alive.
struct tracked {
  static inline std::atomic<int> alive{0};
  static inline std::atomic<int> built{0};

  explicit tracked(int v = 0) : value(v) {
    ++alive;
    ++built;
  }
  tracked(const tracked& other) : value(other.value) {
    ++alive;
    ++built;
  }
  tracked& operator=(const tracked&) = default;
  ~tracked() { --alive; }

  static void reset() {
    alive = 0;
    built = 0;
  }

  int value;
};

// A one-shot gate built on std primitives, so the tests of local do not depend on other tandem
// types.
class gate {
public:
  void open() {
    {
      std::lock_guard guard{mtx_};
      open_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock guard{mtx_};
    cv_.wait(guard, [this] { return open_; });
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool open_ = false;
};

} // namespace

TEST_SUITE("local") {

  TEST_CASE("each thread gets its own value built from the constructor arguments") {
    tandem::test::watchdog guard{10s};
    tandem::local<std::string> sut{"start"};
    sut.get() += "-main";
    std::vector<std::string> seen(4);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < seen.size(); ++i) {
      threads.emplace_back([&, i] {
        seen[i] = sut.get();            // a fresh copy of the arguments, not main's value
        sut.get() += std::to_string(i); // changes this thread's value only
        seen[i] += "|" + *sut;
      });
    }
    for (auto& t : threads) t.join();
    for (std::size_t i = 0; i < seen.size(); ++i)
      CHECK(seen[i] == "start|start" + std::to_string(i));
    CHECK(*sut == "start-main");
  }

  TEST_CASE("the constructor arguments are copied when the local is built") {
    tandem::test::watchdog guard{10s};
    std::string initial = "before";
    tandem::local<std::string> sut{initial};
    initial = "after";
    std::string seen;
    std::thread t{[&] { seen = sut.get(); }};
    t.join();
    CHECK(seen == "before");
  }

  TEST_CASE("a value is built lazily in the thread that first uses it") {
    tandem::test::watchdog guard{10s};
    tracked::reset();
    tandem::local<tracked> sut{7};
    CHECK(tracked::built == 0);
    std::thread t{[&] { CHECK(sut->value == 7); }};
    t.join();
    CHECK(tracked::built == 1);
    CHECK(tracked::alive == 0);
  }

  TEST_CASE("a default built local value initializes scalars to zero") {
    tandem::local<int> sut;
    CHECK(*sut == 0);
    *sut = 5;
    CHECK(sut.get() == 5);
  }

  TEST_CASE("values are destroyed when their std thread ends") {
    tandem::test::watchdog guard{10s};
    tracked::reset();
    tandem::local<tracked> sut;
    std::vector<std::thread> threads;
    for (int i = 0; i < 20; ++i) threads.emplace_back([&, i] { sut->value = i; });
    for (auto& t : threads) t.join();
    CHECK(tracked::built == 20);
    CHECK(tracked::alive == 0);
  }

  TEST_CASE("destroying the local destroys the values of threads that are still running") {
    tandem::test::watchdog guard{10s};
    tracked::reset();
    auto sut = std::make_unique<tandem::local<tracked>>(3);
    gate used, release;
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&] {
        (*sut)->value += 1;
        ++ready;
        release.wait();
      });
    }
    REQUIRE(tandem::test::wait_until([&] { return ready == 3; }));
    CHECK(tracked::alive == 3);
    sut.reset(); // the threads are still running
    CHECK(tracked::alive == 0);
    release.open();
    for (auto& t : threads) t.join(); // their exit finds nothing left to destroy
    CHECK(tracked::alive == 0);
    CHECK(tracked::built == 3);
  }

  TEST_CASE("two locals of the same type are independent") {
    tandem::test::watchdog guard{10s};
    tandem::local<int> a{1};
    tandem::local<int> b{2};
    std::thread t{[&] {
      *a += 10;
      *b += 20;
      CHECK(*a == 11);
      CHECK(*b == 22);
    }};
    t.join();
    CHECK(*a == 1);
    CHECK(*b == 2);
  }

  TEST_CASE("a local that reuses the slot of a destroyed one starts with fresh values") {
    tandem::test::watchdog guard{10s};
    gate step1, step2, done;
    std::optional<tandem::local<int>> first{std::in_place, 1};
    std::optional<tandem::local<int>> second;
    std::atomic<int> seen_first{-1}, seen_second{-1};
    std::atomic<bool> used{false};
    std::thread worker{[&] {
      **first = 100; // this long-lived thread holds a value in the first local's slot
      seen_first = **first;
      used = true;
      step1.wait();
      seen_second = **second; // must be the second local's initial value, not 100
      step2.open();
      done.wait();
    }};
    REQUIRE(tandem::test::wait_until([&] { return used.load(); }));
    first.reset();
    for (int i = 0; i < 8; ++i) // several locals, so one of them surely reuses the slot
      second.emplace(2);
    step1.open();
    step2.wait();
    done.open();
    worker.join();
    CHECK(seen_first == 100);
    CHECK(seen_second == 2);
  }

  TEST_CASE("a value destructor may use another local when its thread ends") {
    tandem::test::watchdog guard{10s};
    tracked::reset();
    static tandem::local<tracked>* other = nullptr;
    struct user {
      ~user() {
        if (other != nullptr)
          (*other)->value = 9; // builds a value in the dying thread; it must die too
      }
    };
    tandem::local<tracked> second;
    other = &second;
    {
      tandem::local<user> sut;
      std::thread t{[&] { sut.get(); }};
      t.join();
      CHECK(tracked::built == 1);
      CHECK(tracked::alive == 0);
    }
    other = nullptr;
  }

  TEST_CASE("a throwing constructor leaves no value and the next use builds again") {
    tandem::test::watchdog guard{10s};
    static std::atomic<int> attempts{0};
    struct flaky {
      flaky() {
        if (++attempts == 1) throw std::runtime_error("first construction fails");
      }
    };
    attempts = 0;
    tandem::local<flaky> sut;
    std::thread t{[&] {
      CHECK_THROWS_AS(sut.get(), std::runtime_error);
      CHECK_NOTHROW(sut.get());
      CHECK_NOTHROW(sut.get()); // built once, then found
    }};
    t.join();
    CHECK(attempts == 2);
  }

  TEST_CASE("destroy_thread_locals destroys the values of the calling thread at once") {
    tandem::test::watchdog guard{10s};
    tracked::reset();
    tandem::local<tracked> sut{4};
    std::thread t{[&] {
      sut->value = 5;
      tandem::detail::destroy_thread_locals();
      CHECK(tracked::alive == 0);
      CHECK(sut->value == 4); // a fresh value, destroyed at thread exit
      CHECK(tracked::alive == 1);
    }};
    t.join();
    CHECK(tracked::alive == 0);
    CHECK(tracked::built == 2);
  }

  TEST_CASE("locals created and destroyed while other threads use theirs stay consistent") {
    tandem::test::watchdog guard{60s};
    tracked::reset();
    constexpr int threads_n = 4;
    const int rounds = std::max(50, static_cast<int>(2000 * tandem::test::stress_scale()));
    tandem::local<int> shared_local{0};
    std::atomic<bool> stop{false};
    std::atomic<int> errors{0};
    std::vector<std::thread> users;
    for (int i = 0; i < threads_n; ++i) {
      users.emplace_back([&, i] {
        int expected = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          // Short-lived locals of this thread, and a long-lived one shared by every thread.
          tandem::local<tracked> mine{i};
          if (mine->value != i) ++errors;
          ++*shared_local;
          if (*shared_local != ++expected) ++errors;
        }
      });
    }
    for (int r = 0; r < rounds; ++r) {
      // Locals destroyed here while the users hold values in their own locals' slots.
      tandem::local<tracked> transient{r};
      if (transient->value != r) ++errors;
    }
    stop = true;
    for (auto& t : users) t.join();
    CHECK(errors == 0);
    CHECK(tracked::alive == 0);
  }
}
