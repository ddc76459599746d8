// tandem::mailbox: Queue semantics over CAF messages (CPython's Lib/test/test_queue.py cases that
// apply to a mailbox) and CAF's blocking receive (matching, stash, timeout), without actors; the
// actor side is in thread_actor_test.cpp.
#include <tandem/error.hpp>
#include <tandem/mailbox.hpp>
#include <tandem/receive.hpp>

#include "support/watchdog.hpp"

#include <doctest/doctest.h>

#include <caf/after.hpp>
#include <caf/atom.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/make_message.hpp>
#include <caf/result.hpp>
#include <caf/skip.hpp>
#include <caf/unit.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

int int_of(tandem::mailbox::envelope& e) {
  return e.content().get_as<int>(0);
}

// Runs `f` in a thread and records its kernel id, so tests can wait until it blocks.
class party {
public:
  template <class F>
  explicit party(F f)
      : thread_([this, f] {
          tid_.store(tandem::test::tid());
          f();
        }) {}

  party(const party&) = delete;
  party& operator=(const party&) = delete;

  ~party() {
    if (thread_.joinable()) thread_.join();
  }

  bool blocked() {
    tandem::test::wait_until([this] { return tid_.load() != 0; });
    pid_t id = tid_.load();
    return tandem::test::wait_until_blocked({&id, 1});
  }

  void join() { thread_.join(); }

private:
  std::atomic<pid_t> tid_{0};
  std::thread thread_;
};

// An expiring wait takes at least 0.6x its timeout and less than 10x (or the timeout plus 2 s,
// whichever is more: a busy 2-CPU machine can schedule a short wait 100+ ms late).
void check_expiry(clock_type::duration took, clock_type::duration limit) {
  CHECK(took >= limit * 6 / 10);
  CHECK(took < std::max<clock_type::duration>(limit * 10, limit + std::chrono::seconds{2}));
}

} // namespace

TEST_SUITE("mailbox") {

  TEST_CASE("a message sent from plain code comes out with its content and no sender") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;

    sut.send(42, std::string{"hello"});
    auto e = sut.get();

    REQUIRE(e);
    CHECK(e.content().match_elements<int, std::string>());
    CHECK(e.content().get_as<std::string>(1) == "hello");
    CHECK_FALSE(e.sender());
    CHECK_FALSE(e.is_request());
    CHECK(sut.empty());
  }

  TEST_CASE("messages come out in the order they were sent") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;

    for (int i = 0; i < 5; ++i) sut.send(i);
    sut.put(caf::make_message(5));

    CHECK(sut.qsize() == 6);
    for (int i = 0; i < 6; ++i) {
      auto e = sut.get();
      CHECK(int_of(e) == i);
    }
    CHECK(sut.empty());
  }

  TEST_CASE("get with a timeout on an empty mailbox returns nothing once the timeout expired") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;

    auto start = clock_type::now();
    auto result = sut.get(100ms);
    auto took = clock_type::now() - start;

    CHECK_FALSE(result.has_value());
    check_expiry(took, 100ms);
  }

  TEST_CASE("get with a negative timeout polls") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;

    CHECK_FALSE(sut.get(-1s).has_value());
    sut.send(1);
    auto result = sut.get(-1s);

    REQUIRE(result.has_value());
    CHECK(int_of(*result) == 1);
  }

  TEST_CASE("a blocked get returns the message sent by another thread") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    std::atomic<int> got{-1};
    party receiver{[&] {
      auto e = sut.get();
      got = int_of(e);
    }};
    REQUIRE(receiver.blocked());

    sut.send(7);
    receiver.join();

    CHECK(got == 7);
  }

  TEST_CASE("a full mailbox blocks the sender until a message is taken") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut{1};
    sut.send(1);
    REQUIRE(sut.full());
    std::atomic<bool> sent{false};
    party sender{[&] {
      sut.send(2);
      sent = true;
    }};
    REQUIRE(sender.blocked());
    CHECK_FALSE(sent.load());

    auto first = sut.get();
    sender.join();

    CHECK(int_of(first) == 1);
    CHECK(sent.load());
    auto second = sut.get();
    CHECK(int_of(second) == 2);
  }

  TEST_CASE("put with a timeout on a full mailbox gives up and leaves the envelope intact") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut{1};
    sut.send(1);
    tandem::mailbox::envelope e{caf::make_message(2)};

    auto start = clock_type::now();
    bool put = sut.put(std::move(e), 100ms);
    auto took = clock_type::now() - start;

    CHECK_FALSE(put);
    check_expiry(took, 100ms);
    REQUIRE(e); // NOLINT(bugprone-use-after-move): a failed put leaves it untouched
    CHECK(int_of(e) == 2);
    CHECK(sut.qsize() == 1);
  }

  TEST_CASE("put_nowait on a full mailbox throws full_error and get_nowait on an empty one "
            "throws empty_error") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut{1};

    CHECK_THROWS_AS(sut.get_nowait(), tandem::empty_error);
    sut.put_nowait(caf::make_message(1));
    tandem::mailbox::envelope e{caf::make_message(2)};
    CHECK_THROWS_AS(sut.put_nowait(std::move(e)), tandem::full_error);

    CHECK(e); // NOLINT(bugprone-use-after-move): a failed put leaves it untouched
    auto got = sut.get_nowait();
    CHECK(int_of(got) == 1);
  }

  TEST_CASE("join waits until every message is reported done") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(1);
    sut.send(2);
    std::atomic<bool> joined{false};
    party joiner{[&] {
      sut.join();
      joined = true;
    }};
    REQUIRE(joiner.blocked());

    auto a = sut.get();
    sut.task_done();
    CHECK_FALSE(sut.join(10ms));
    auto b = sut.get();
    sut.task_done();
    joiner.join();

    CHECK(joined.load());
    CHECK(sut.join(0s));
    CHECK(sut.unfinished_tasks() == 0);
  }

  TEST_CASE("join with a timeout returns false while a message is not done") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(1);

    auto start = clock_type::now();
    bool joined = sut.join(100ms);
    auto took = clock_type::now() - start;

    CHECK_FALSE(joined);
    check_expiry(took, 100ms);
  }

  TEST_CASE("task_done called more often than messages arrived throws value_error") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(1);
    auto e = sut.get();
    sut.task_done();

    CHECK_THROWS_AS(sut.task_done(), tandem::value_error);
  }

  TEST_CASE("after shutdown puts throw and gets drain the mailbox then throw shut_down_error") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(1);
    sut.send(2);

    sut.shutdown();

    CHECK(sut.is_shutdown());
    CHECK_THROWS_AS(sut.send(3), tandem::shut_down_error);
    CHECK_THROWS_AS(sut.put_nowait(caf::make_message(3)), tandem::shut_down_error);
    auto a = sut.get();
    CHECK(int_of(a) == 1);
    auto b = sut.get(0s);
    REQUIRE(b.has_value());
    CHECK(int_of(*b) == 2);
    CHECK_THROWS_AS(sut.get(), tandem::shut_down_error);
    CHECK_THROWS_AS(sut.get(10ms), tandem::shut_down_error);
    CHECK_THROWS_AS(sut.get_nowait(), tandem::shut_down_error);
  }

  TEST_CASE("shutdown wakes a blocked get and a blocked sender with shut_down_error") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox empty_box;
    tandem::mailbox full_box{1};
    full_box.send(1);
    std::atomic<int> errors{0};
    party getter{[&] {
      try {
        (void)empty_box.get();
      } catch (const tandem::shut_down_error&) {
        ++errors;
      }
    }};
    party sender{[&] {
      try {
        full_box.send(2);
      } catch (const tandem::shut_down_error&) {
        ++errors;
      }
    }};
    REQUIRE(getter.blocked());
    REQUIRE(sender.blocked());

    empty_box.shutdown();
    full_box.shutdown();
    getter.join();
    sender.join();

    CHECK(errors == 2);
  }

  TEST_CASE("immediate shutdown drops queued and stashed messages and releases join") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(std::string{"unmatched"});
    sut.send(1);
    sut.send(2);
    REQUIRE(sut.receive([](int) {}, 0s)); // stashes the string, handles 1
    REQUIRE(sut.qsize() == 2);

    sut.shutdown(true);

    CHECK(sut.qsize() == 0);
    CHECK(sut.join(0s));
    CHECK_THROWS_AS(sut.get_nowait(), tandem::shut_down_error);
    CHECK_THROWS_AS(sut.receive([](int) {}, 0s), tandem::shut_down_error);
  }

  TEST_CASE("a stop request ends a blocked get and a blocked receive") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    std::stop_source stop;
    std::atomic<int> stopped{0};
    party getter{[&] {
      if (!sut.get(stop.get_token()).has_value()) ++stopped;
    }};
    party receiver{[&] {
      if (!sut.receive(stop.get_token(), [](int) {})) ++stopped;
    }};
    REQUIRE(getter.blocked());
    REQUIRE(receiver.blocked());

    stop.request_stop();
    getter.join();
    receiver.join();

    CHECK(stopped == 2);
    CHECK_FALSE(sut.get(stop.get_token(), 0s).has_value());
  }

  TEST_CASE("receive runs the first handler that matches") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(std::string{"text"}, 2);
    std::string seen;

    bool handled = sut.receive([&](int) { seen = "int"; },
                               [&](const std::string& s, int n) { seen = s + std::to_string(n); },
                               [&](const std::string&, int) { seen = "second"; }, 1s);

    CHECK(handled);
    CHECK(seen == "text2");
    CHECK(sut.empty());
  }

  TEST_CASE("receive keeps unmatched messages and later receives see them first and in order") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(std::string{"a"});
    sut.send(std::string{"b"});
    sut.send(1);
    std::vector<std::string> seen;

    REQUIRE(sut.receive([&](int x) { seen.push_back(std::to_string(x)); }, 1s));
    CHECK(sut.qsize() == 2);
    sut.send(std::string{"c"});
    for (int i = 0; i < 3; ++i)
      REQUIRE(sut.receive([&](const std::string& s) { seen.push_back(s); }, 1s));

    CHECK(seen == std::vector<std::string>{"1", "a", "b", "c"});
    CHECK(sut.empty());
  }

  TEST_CASE("get returns stashed messages before queued ones") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(std::string{"stashed"});
    sut.send(1);
    REQUIRE(sut.receive([](int) {}, 1s));
    sut.send(std::string{"queued"});

    auto first = sut.get();
    auto second = sut.get();

    CHECK(first.content().get_as<std::string>(0) == "stashed");
    CHECK(second.content().get_as<std::string>(0) == "queued");
  }

  TEST_CASE("receive with a timeout returns false when nothing matches and keeps the message") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(std::string{"not an int"});
    bool ran = false;

    auto start = clock_type::now();
    bool handled = sut.receive([&](int) { ran = true; }, 100ms);
    auto took = clock_type::now() - start;

    CHECK_FALSE(handled);
    CHECK_FALSE(ran);
    check_expiry(took, 100ms);
    CHECK(sut.qsize() == 1);
  }

  TEST_CASE("a caf after handler runs when nothing matched within its duration") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(std::string{"unmatched"});
    bool timed_out = false;

    auto start = clock_type::now();
    bool handled = sut.receive([](int) {}, caf::after(100ms) >> [&] { timed_out = true; });
    auto took = clock_type::now() - start;

    CHECK_FALSE(handled);
    CHECK(timed_out);
    check_expiry(took, 100ms);
    timed_out = false;
    CHECK_FALSE(sut.receive([](int) {}, caf::after(10s) >> [&] { timed_out = true; }, 10ms));
    CHECK_FALSE(timed_out); // the receive's own, earlier timeout expired: no handler
  }

  TEST_CASE("receive waits for a matching message sent by another thread") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    std::atomic<int> got{0};
    party receiver{[&] { sut.receive([&](int x) { got = x; }); }};
    REQUIRE(receiver.blocked());

    sut.send(std::string{"skip me"});
    sut.send(5);
    receiver.join();

    CHECK(got == 5);
    CHECK(sut.qsize() == 1);
  }

  TEST_CASE("a handler returning skip leaves the message for a later receive") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(1);
    sut.send(2);
    std::vector<int> seen;

    REQUIRE(sut.receive(
        [&](int x) -> caf::result<void> {
          if (x == 1) return caf::skip();
          seen.push_back(x);
          return caf::unit;
        },
        1s));
    REQUIRE(sut.receive([&](int x) { seen.push_back(x); }, 1s));

    CHECK(seen == std::vector<int>{2, 1});
  }

  TEST_CASE("receive accepts a ready behavior and a stop token") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    int sum = 0;
    caf::behavior bhvr{[&](int x) { sum += x; }};
    std::stop_source stop;
    sut.send(1);
    sut.send(2);

    CHECK(sut.receive(bhvr));
    CHECK(sut.receive(stop.get_token(), bhvr, 1s));
    CHECK_FALSE(sut.receive(bhvr, 0s));

    CHECK(sum == 3);
  }

  TEST_CASE("receive reports each handled message as done") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(std::string{"unmatched"});
    sut.send(1);

    REQUIRE(sut.receive([](int) {}, 1s));
    CHECK_FALSE(sut.join(0s));
    REQUIRE(sut.receive([](const std::string&) {}, 1s));

    CHECK(sut.join(0s));
  }

  TEST_CASE("an exception in a handler propagates and the message counts as handled") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(1);

    CHECK_THROWS_AS(sut.receive([](int) { throw std::runtime_error{"boom"}; }, 1s),
                    std::runtime_error);

    CHECK(sut.empty());
    CHECK(sut.join(0s));
  }

  TEST_CASE("receive on a shut-down mailbox with only unmatched messages throws shut_down_error") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(std::string{"unmatched"});
    sut.shutdown();

    CHECK_THROWS_AS(sut.receive([](int) {}, 1s), tandem::shut_down_error);
    auto left = sut.get(); // the unmatched message is still there for get
    CHECK(left.content().match_elements<std::string>());
  }

  TEST_CASE("messages delivered by CAF are accepted beyond the capacity") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut{1};
    sut.send(1);

    auto element = caf::make_mailbox_element(nullptr, caf::make_message_id(), {}, 2);
    bool delivered = sut.deliver(element);

    CHECK(delivered);
    CHECK(sut.qsize() == 2);
    CHECK(sut.full());
    CHECK_FALSE(sut.put(caf::make_message(3), 0s));
  }

  TEST_CASE("deliver refuses messages once the mailbox is shut down") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.shutdown();

    auto element = caf::make_mailbox_element(nullptr, caf::make_message_id(), {}, 1);
    bool delivered = sut.deliver(element);

    CHECK_FALSE(delivered);
    CHECK(element != nullptr);
  }

  TEST_CASE("reply and receive outside a tandem thread throw usage_error") {
    tandem::test::watchdog guard{10s};

    CHECK(tandem::current_envelope() == nullptr);
    CHECK_FALSE(tandem::current_sender());
    CHECK_THROWS_AS(tandem::reply(1), tandem::usage_error);
    CHECK_THROWS_AS(tandem::receive([](int) {}, 0s), tandem::usage_error);
  }

  TEST_CASE("an envelope without a sender ignores replies") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    sut.send(1);
    auto e = sut.get();

    e.reply(2);

    CHECK(e.answered());
    CHECK(int_of(e) == 1);
  }

  TEST_CASE("a put of an empty envelope throws value_error") {
    tandem::test::watchdog guard{10s};
    tandem::mailbox sut;
    tandem::mailbox::envelope e;

    CHECK_THROWS_AS(sut.put(std::move(e)), tandem::value_error);
    CHECK(sut.empty());
  }

  TEST_CASE("producers and a receiver exchange every message exactly once") {
    tandem::test::watchdog guard{30s};
    tandem::mailbox sut{8};
    constexpr int per_producer = 2000;
    std::vector<std::thread> producers;
    for (int p = 0; p < 3; ++p)
      producers.emplace_back([&, p] {
        for (int i = 0; i < per_producer; ++i) sut.send(p, i);
      });
    std::vector<int> next(3, 0);
    bool in_order = true;

    for (int n = 0; n < 3 * per_producer; ++n)
      REQUIRE(sut.receive(
          [&](int p, int i) {
            in_order = in_order && next[static_cast<std::size_t>(p)] == i;
            ++next[static_cast<std::size_t>(p)];
          },
          10s));
    for (auto& t : producers) t.join();

    CHECK(in_order);
    CHECK(next == std::vector<int>(3, per_producer));
    CHECK(sut.join(0s));
  }

} // TEST_SUITE
