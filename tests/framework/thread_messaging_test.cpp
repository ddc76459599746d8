// tandem::thread as an actor: its mailbox (send, receive), its caf::actor (requests, monitors),
// and what its end does to both. Each case builds its own runtime, and every thread it starts
// ends before the case does.
#include <tandem/detail/caf.hpp>
#include <tandem/error.hpp>
#include <tandem/event.hpp>
#include <tandem/receive.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include "support/watchdog.hpp"

#include <doctest/doctest.h>

#include <caf/actor.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/system_messages.hpp>

#include <atomic>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

TEST_SUITE("thread messaging") {

  TEST_CASE("messages sent before start wait in the mailbox and receive matches them in order") {
    tandem::test::watchdog guard{10s};
    std::atomic<int> sum{0};
    std::string words;
    tandem::thread sut{[&] {
      for (int i = 0; i < 3; ++i)
        tandem::receive([&](int x) { sum += x; }, [&](const std::string& s) { words += s; });
    }};

    sut.send(std::string{"a"});
    sut.send(40);
    sut.send(2);
    CHECK(sut.mailbox().qsize() == 3);
    sut.start();

    REQUIRE(sut.join(8s));
    CHECK(sum == 42);
    CHECK(words == "a");
  }

  TEST_CASE("a request from a CAF actor is answered by the value the thread's handler returns") {
    tandem::test::watchdog guard{20s};
    tandem::runtime rt;
    tandem::thread sut{[] { tandem::receive([](int x) { return x + 1; }); }};
    sut.start();
    caf::scoped_actor self{rt.system()};

    int answer = 0;
    self->request(sut.actor(), std::chrono::seconds(8), 41)
        .receive([&](int x) { answer = x; }, [&](caf::error& err) { FAIL(to_string(err)); });

    CHECK(answer == 42);
    CHECK(sut.join(8s));
  }

  TEST_CASE("a thread that sends to an actor gets the answer in its own mailbox") {
    tandem::test::watchdog guard{20s};
    tandem::runtime rt;
    caf::scoped_actor self{rt.system()};
    auto echo = rt.system().spawn(
        [](caf::event_based_actor*, int offset) -> caf::behavior {
          return {[offset](int x) { return x + offset; }};
        },
        100);
    std::atomic<int> got{0};
    tandem::thread sut{[&] {
      tandem::send_to(echo, 1);
      tandem::receive([&](int x) { got = x; }, 8s);
    }};

    sut.start();
    REQUIRE(sut.join(10s));

    CHECK(got == 101);
    self->send_exit(echo, caf::exit_reason::user_shutdown);
  }

  TEST_CASE("a CAF actor monitoring a thread gets a normal down message when it returns") {
    tandem::test::watchdog guard{20s};
    tandem::runtime rt;
    tandem::event go;
    tandem::thread sut{[&] { go.wait(); }};
    sut.start();
    caf::scoped_actor self{rt.system()};
    self->monitor(sut.actor());

    go.set();
    bool down = false;
    caf::error reason;
    self->receive(
        [&](caf::down_msg& dm) {
          down = true;
          reason = dm.reason;
        },
        caf::after(std::chrono::seconds(8)) >> [] {});

    CHECK(down);
    CHECK_FALSE(reason);
    CHECK(sut.join(8s));
  }

  TEST_CASE("a CAF actor monitoring a thread gets the exception text when the target throws") {
    tandem::test::watchdog guard{20s};
    tandem::runtime rt;
    auto previous = tandem::excepthook();
    tandem::set_excepthook([](const tandem::excepthook_args&) {}); // keep the test's output clean
    tandem::event go;
    tandem::thread sut{[&] {
      go.wait();
      throw std::runtime_error{"worker failed: disk full"};
    }};
    sut.start();
    caf::scoped_actor self{rt.system()};
    self->monitor(sut.actor());

    go.set();
    caf::error reason;
    self->receive([&](caf::down_msg& dm) { reason = dm.reason; },
                  caf::after(std::chrono::seconds(8)) >> [] {});
    CHECK(sut.join(8s));
    tandem::set_excepthook(previous);

    CHECK(reason.code() == static_cast<std::uint8_t>(caf::exit_reason::unhandled_exception));
    CHECK(tandem::detail::error_text(reason) == "worker failed: disk full");
  }

  TEST_CASE("sending to a thread that has ended throws shut_down_error") {
    tandem::test::watchdog guard{10s};
    tandem::thread sut{[] {}};
    sut.send(1); // before start: kept, then dropped when the thread ends without reading it
    sut.start();
    REQUIRE(sut.join(8s));

    CHECK_THROWS_AS(sut.send(2), tandem::shut_down_error);
    CHECK(sut.mailbox().is_shutdown());
  }

  TEST_CASE("the actor of a thread that has ended is already down") {
    tandem::test::watchdog guard{20s};
    tandem::runtime rt;
    tandem::thread sut{[] {}};
    sut.start();
    REQUIRE(sut.join(8s));
    caf::scoped_actor self{rt.system()};

    auto actor = sut.actor();
    self->monitor(actor);
    bool down = false;
    self->receive([&](caf::down_msg&) { down = true; },
                  caf::after(std::chrono::seconds(8)) >> [] {});

    CHECK(down);
    CHECK(sut.actor() == actor);
  }

  TEST_CASE("a mailbox capacity makes a plain sender block until the thread takes a message") {
    tandem::test::watchdog guard{10s};
    tandem::event go;
    tandem::thread sut{{.name = "bounded", .mailbox_capacity = 1}, [&] {
                         go.wait();
                         tandem::receive([](int) {});
                         tandem::receive([](int) {});
                       }};
    sut.start();
    sut.send(1);

    auto before = std::chrono::steady_clock::now();
    CHECK_FALSE(sut.mailbox().put(tandem::mailbox::envelope{caf::make_message(2)}, 50ms));
    CHECK(std::chrono::steady_clock::now() - before >= 30ms);
    go.set();
    sut.send(2); // blocks until the thread has taken the first message

    CHECK(sut.join(8s));
    CHECK(sut.mailbox().maxsize() == 1);
  }
}
