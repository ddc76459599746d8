// A process's mailbox (tandem/mp/process_mailbox.hpp, p.send/p.recv) with every start method:
// values both ways, end of file after either side ends, receive with handlers, replies, the stash
// and timeouts; and the process as a CAF actor (p.actor()): requests answered by the child's
// handlers, monitors told the exit code, a forgotten actor ended by the runtime's shutdown.
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/pipe.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/process_mailbox.hpp>
#include <tandem/mp/wait.hpp>
#include <tandem/runtime.hpp>

#include <doctest/doctest.h>

#include <caf/actor.hpp>
#include <caf/after.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/system_messages.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;
namespace mp = tandem::mp;

namespace {

constexpr mp::start_method methods[] = {mp::start_method::forkserver, mp::start_method::spawn,
                                        mp::start_method::fork};

// The watchdog and the runtime run threads, so fork children are allowed with other threads
// here; their targets only use sockets and the allocator (whose locks survive fork).
mp::process_options with(mp::start_method m) {
  return {.name = {}, .daemon = false, .method = m, .allow_threads = true};
}

struct point {
  std::int32_t x = 0;
  std::int32_t y = 0;
  std::string label;
  friend bool operator==(const point&, const point&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, point& p) {
  return f(caf::meta::type_name("point"), p.x, p.y, p.label);
}

std::int64_t ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

// -- targets ------------------------------------------------------------------------------------

// Answers ints, strings, points and (string, int) pairs until told to stop with `false`.
void serve_values() {
  bool running = true;
  while (running)
    mp::receive([](int x) { return x + 1; }, [](const std::string& s) { return s + "!"; },
                [](point p) {
                  return point{p.y, p.x, p.label + "?"};
                },
                [](std::string s, int n) {
                  return std::tuple{n * 2, s};
                },
                [&running](bool go) { running = go; });
}

// Pipe semantics in the child: recv a pair, send it back swapped; a wrong type exits 3.
void recv_then_send() {
  auto [n, s] = mp::recv<std::tuple<int, std::string>>();
  mp::send(s, n * 2);
  auto p = mp::recv<point>();
  mp::send(p);
  try {
    mp::recv<std::string>(); // the parent sends an int
  } catch (const tandem::bad_message_error&) {
    mp::send(std::string{"mismatch"});
    return;
  }
  mp::exit(3);
}

void send_three() {
  mp::send(1);
  mp::send(2);
  mp::send(3);
}

// The first receive only handles ints: the string sent before stays stashed for the second.
void stash_strings() {
  mp::receive([](int x) { return x * 10; });
  mp::receive([](const std::string& s) { return s + " later"; });
  // recv takes a stashed message too: the parent sent ("a", then 7); 7 is handled first.
  mp::receive([](int x) { return x; });
  auto a = mp::recv<std::string>();
  mp::send("got " + a);
}

// Reports whether a 200 ms receive timed out, and how long it took.
void receive_times_out() {
  auto start = std::chrono::steady_clock::now();
  bool handled = mp::receive([](int) {}, 200ms);
  auto polled = mp::poll();
  mp::send(handled, polled, ms_since(start));
}

// Says it waits, then reports 1 when receive and recv both threw eof_error once the parent was
// gone (2 or 3 when one returned instead, 4 or 5 when one timed out: then nothing is left
// running after a failure).
void await_parent_end(mp::connection report) {
  report.send(0);
  int result = 1;
  try {
    result = mp::receive([](int) {}, 30s) ? 2 : 4;
  } catch (const tandem::eof_error&) {
  }
  try {
    result = mp::recv<int>(30s) ? 3 : 5;
  } catch (const tandem::eof_error&) {
  }
  report.send(result);
}

// Starts a grandchild that waits for end of file on its mailbox, then sleeps until killed.
void start_waiting_grandchild(mp::connection report, int method) {
  mp::process grandchild{with(static_cast<mp::start_method>(method)), await_parent_end,
                         std::move(report)};
  grandchild.start();
  std::this_thread::sleep_for(60s);
}

// Handles strings only: an int request stays stashed, unanswered, until the child is killed.
void strings_only() {
  for (;;) mp::receive([](const std::string& s) { return s; });
}

void exit_with(int code) {
  mp::exit(code);
}

// Waits for a down message from `whom` and returns its exit code (-1000 when it carries none,
// -2000 when none came in time).
int exit_code_after_down(caf::scoped_actor& self, const caf::actor& whom) {
  int code = -2000;
  self->monitor(whom);
  self->receive(
      [&](const caf::down_msg& m) {
        CHECK(m.source == whom.address());
        code = mp::exit_code_of(m.reason).value_or(-1000);
      },
      caf::after(std::chrono::seconds{20}) >> [] {});
  return code;
}

} // namespace

TEST_SUITE("process mailbox") {
  TEST_CASE("send and recv carry ints strings and structs both ways") {
    tandem::test::watchdog guard{60s};
    tandem::runtime rt;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process sut{with(m), serve_values};
      sut.start();
      sut.send(41);
      CHECK(sut.recv<int>() == 42);
      sut.send("hey");
      CHECK(sut.recv<std::string>() == "hey!");
      sut.send(point{1, 2, "p"});
      CHECK(sut.recv<point>() == point{2, 1, "p?"});
      sut.send(std::string{"n"}, 3);
      CHECK(sut.recv<std::tuple<int, std::string>>() == std::tuple{6, std::string{"n"}});
      sut.send(std::tuple{std::string{"t"}, 4}); // a tuple is its values
      CHECK(sut.recv<std::tuple<int, std::string>>() == std::tuple{8, std::string{"t"}});
      sut.send(false);
      REQUIRE(sut.join(20s));
      CHECK(sut.exitcode() == 0);
    }
  }

  TEST_CASE("the child receives with recv and sends with send") {
    tandem::test::watchdog guard{60s};
    tandem::runtime rt;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process sut{with(m), recv_then_send};
      sut.start();
      sut.send(21, std::string{"x"});
      CHECK(sut.recv<std::tuple<std::string, int>>() == std::tuple{std::string{"x"}, 42});
      sut.send(point{5, 6, "q"});
      CHECK(sut.recv<point>() == point{5, 6, "q"});
      sut.send(7);
      CHECK(sut.recv<std::string>() == "mismatch");
      REQUIRE(sut.join(20s));
      CHECK(sut.exitcode() == 0);
    }
  }

  TEST_CASE("the parent reads every pending message then gets eof after the child exits") {
    tandem::test::watchdog guard{60s};
    tandem::runtime rt;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process sut{with(m), send_three};
      sut.start();
      REQUIRE(sut.join(20s));
      CHECK(sut.poll());
      CHECK(sut.recv<int>() == 1);
      CHECK(sut.recv<int>() == 2);
      CHECK(sut.recv<int>(0s) == std::optional<int>{3});
      CHECK(sut.poll()); // end of file is ready
      CHECK_THROWS_AS(sut.recv<int>(), tandem::eof_error);
      CHECK_THROWS_AS(sut.recv<int>(1s), tandem::eof_error);
    }
  }

  TEST_CASE("the child gets eof within a second once its parent is killed") {
    tandem::test::watchdog guard{90s};
    tandem::runtime rt;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      auto [ours, theirs] = mp::pipe();
      mp::process child{with(mp::start_method::spawn), start_waiting_grandchild, std::move(theirs),
                        static_cast<int>(m)};
      child.start();
      REQUIRE(ours.recv<int>(20s) == std::optional<int>{0}); // the grandchild waits
      auto killed = std::chrono::steady_clock::now();
      child.kill();
      auto result = ours.recv<int>(20s);
      auto elapsed = std::chrono::steady_clock::now() - killed;
      REQUIRE(result.has_value());
      CHECK(*result == 1);
      CHECK(elapsed < 1s);
      REQUIRE(child.join(20s));
      CHECK(child.exitcode() == -9);
    }
  }

  TEST_CASE("an unmatched message stays stashed for a later receive or recv") {
    tandem::test::watchdog guard{60s};
    tandem::runtime rt;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process sut{with(m), stash_strings};
      sut.start();
      sut.send("first");
      sut.send(5);
      CHECK(sut.recv<int>() == 50); // the string waited in the stash
      CHECK(sut.recv<std::string>() == "first later");
      sut.send("a");
      sut.send(7);
      CHECK(sut.recv<int>() == 7);
      CHECK(sut.recv<std::string>() == "got a");
      REQUIRE(sut.join(20s));
      CHECK(sut.exitcode() == 0);
    }
  }

  TEST_CASE("receive and recv time out") {
    tandem::test::watchdog guard{60s};
    tandem::runtime rt;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process sut{with(m), receive_times_out};
      sut.start();
      auto [handled, polled, took] = sut.recv<std::tuple<bool, bool, std::int64_t>>();
      CHECK_FALSE(handled);
      CHECK_FALSE(polled);
      CHECK(took >= 120);
      CHECK(took < 2000);
      REQUIRE(sut.join(20s));
      auto start = std::chrono::steady_clock::now();
      CHECK_THROWS_AS(sut.recv<int>(200ms), tandem::eof_error); // the child is gone
      CHECK(ms_since(start) < 2000);
    }
    mp::process idle{with(mp::start_method::fork), stash_strings};
    idle.start();
    CHECK_FALSE(idle.poll());
    auto start = std::chrono::steady_clock::now();
    CHECK(idle.recv<int>(150ms) == std::nullopt);
    CHECK(ms_since(start) >= 90);
    CHECK(mp::wait({idle.connection()}, 0s).empty());
    idle.kill();
    REQUIRE(idle.join(20s));
    CHECK(mp::wait({idle.connection()}, 5s).size() == 1); // end of file
  }

  TEST_CASE("the mailbox refuses misuse") {
    tandem::test::watchdog guard{30s};
    tandem::runtime rt;
    mp::process sut{with(mp::start_method::fork), send_three};
    CHECK_THROWS_AS(sut.send(1), tandem::usage_error);       // not started
    CHECK_THROWS_AS(sut.recv<int>(0s), tandem::usage_error); // not started
    CHECK_THROWS_AS(mp::recv<int>(0s), tandem::usage_error); // the main process has no parent
    CHECK_THROWS_AS(mp::send(1), tandem::usage_error);
    sut.start();
    REQUIRE(sut.join(20s));
    sut.close();
    CHECK_THROWS_AS(sut.recv<int>(), tandem::value_error); // closed, as Python's ValueError
  }
}

TEST_SUITE("process actor") {
  TEST_CASE("a scoped actor requests and gets the child's reply") {
    tandem::test::watchdog guard{60s};
    tandem::runtime rt;
    mp::register_message_types<int, std::string>();
    mp::register_message_types<point>();
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process sut{with(m), serve_values};
      sut.start();
      auto actor = sut.actor();
      CHECK(actor == sut.actor());
      caf::scoped_actor self{rt.system()};
      int answer = 0;
      self->request(actor, 20s, 20)
          .receive([&](int x) { answer = x; }, [&](caf::error& e) { FAIL(rt.system().render(e)); });
      CHECK(answer == 21);
      std::string text;
      self->request(actor, 20s, std::string{"hi"})
          .receive([&](const std::string& x) { text = x; },
                   [&](caf::error& e) { FAIL(rt.system().render(e)); });
      CHECK(text == "hi!");
      std::tuple<int, std::string> pair;
      self->request(actor, 20s, std::string{"n"}, 4)
          .receive(
              [&](int n, const std::string& x) {
                pair = {n, x};
              },
              [&](caf::error& e) { FAIL(rt.system().render(e)); });
      CHECK(pair == std::tuple{8, std::string{"n"}});
      point swapped;
      self->request(actor, 20s, point{1, 2, "p"})
          .receive([&](const point& x) { swapped = x; },
                   [&](caf::error& e) { FAIL(rt.system().render(e)); });
      CHECK(swapped == point{2, 1, "p?"});
      // Not a request: the reply comes back as a message to the sender.
      self->send(actor, 1);
      int plain = 0;
      self->receive([&](int x) { plain = x; }, caf::after(std::chrono::seconds{20}) >> [] {});
      CHECK(plain == 2);
      // p.send and the actor reach the same receive.
      sut.send(5);
      CHECK(sut.recv<int>() == 6);
      self->send(actor, false);
      CHECK(exit_code_after_down(self, actor) == 0);
      REQUIRE(sut.join(20s));
      CHECK(sut.exitcode() == 0);
    }
  }

  TEST_CASE("a monitor gets the exit code in its down message") {
    tandem::test::watchdog guard{90s};
    tandem::runtime rt;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      caf::scoped_actor self{rt.system()};
      mp::process exits{with(m), exit_with, 3};
      exits.start();
      CHECK(exit_code_after_down(self, exits.actor()) == 3);
      mp::process clean{with(m), exit_with, 0};
      clean.start();
      CHECK(exit_code_after_down(self, clean.actor()) == 0);
      mp::process killed{with(m), strings_only};
      killed.start();
      auto actor = killed.actor();
      self->monitor(actor);
      killed.kill();
      int code = -2000;
      self->receive(
          [&](const caf::down_msg& d) { code = mp::exit_code_of(d.reason).value_or(-1000); },
          caf::after(std::chrono::seconds{20}) >> [] {});
      CHECK(code == -9);
      CHECK(killed.exitcode() == -9);
      // A monitor that comes after the end still gets it, as does a later actor() handle.
      CHECK(exit_code_after_down(self, killed.actor()) == -9);
    }
  }

  TEST_CASE("a request the child never answers fails when the child is killed") {
    tandem::test::watchdog guard{60s};
    tandem::runtime rt;
    mp::process sut{with(mp::start_method::forkserver), strings_only};
    sut.start();
    caf::scoped_actor self{rt.system()};
    auto actor = sut.actor();
    self->request(actor, 20s, std::string{"ping"})
        .receive([&](const std::string& x) { CHECK(x == "ping"); },
                 [&](caf::error& e) { FAIL(rt.system().render(e)); });
    std::thread killer{[&] {
      std::this_thread::sleep_for(100ms); // lets the request reach the child's stash first
      sut.kill();
    }};
    caf::error failure;
    self->request(actor, 20s, 7).receive([&](int) {}, [&](caf::error& e) { failure = e; });
    killer.join();
    CHECK(failure == caf::sec::request_receiver_down);
    // Later requests fail at once.
    caf::error later;
    self->request(actor, 20s, 8).receive([&](int) {}, [&](caf::error& e) { later = e; });
    CHECK(later == caf::sec::request_receiver_down);
    REQUIRE(sut.join(20s));
  }

  TEST_CASE("a forgotten actor quits at the runtime's shutdown") {
    tandem::test::watchdog guard{60s};
    tandem::runtime rt;
    std::optional<int> code;
    caf::scoped_actor self{rt.system()};
    // An actor that watches the process actor; nothing else refers to the process actor.
    auto watcher = self->spawn(
        [&code](caf::event_based_actor* ctx, const caf::actor& whom) -> caf::behavior {
          ctx->monitor(whom);
          ctx->set_down_handler([&code, ctx](caf::down_msg& m) {
            code = mp::exit_code_of(m.reason);
            ctx->quit();
          });
          return {[](const std::string&) { return std::string{"watching"}; }};
        },
        [] {
          mp::process sut{{.name = {},
                           .daemon = true,
                           .method = mp::start_method::forkserver,
                           .allow_threads = true},
                          serve_values};
          sut.start();
          return sut.actor();
        }());
    // The answer means the monitor is in place.
    self->request(watcher, 20s, std::string{"ready?"})
        .receive([](const std::string&) {}, [&](caf::error& e) { FAIL(rt.system().render(e)); });
    // The shutdown terminates the daemon child; its actor quits with the exit code.
    rt.shutdown(std::chrono::seconds{10});
    self->wait_for(watcher);
    CHECK(code == -15);
  }
}

TEST_CASE("recv in the parent with a stop token returns nullopt promptly on a stop") {
  tandem::test::watchdog guard{30s};
  tandem::runtime rt;
  mp::process p{with(mp::start_method::fork), send_three};
  p.start();
  std::stop_source stopped;
  stopped.request_stop();
  CHECK_FALSE(p.recv<int>(stopped.get_token(), 10s).has_value());
  std::stop_source running;
  auto first = p.recv<int>(running.get_token(), 20s);
  CHECK(first.has_value());
  p.kill();
  p.join(20s);
}

// Waits for a message that never comes until a stop request from another thread ends the wait;
// exits 0 only when recv and poll both returned empty-handed.
void recv_until_stopped() {
  // On the heap: GCC 12 warns (wrongly) that a local std::stop_source may be uninitialized.
  auto source_owner = std::make_unique<std::stop_source>();
  auto& source = *source_owner;
  std::thread stopper{[&] {
    std::this_thread::sleep_for(100ms);
    source.request_stop();
  }};
  auto got = mp::recv<int>(source.get_token());
  bool polled = mp::poll(source.get_token(), 10s);
  stopper.join();
  mp::exit(!got && !polled ? 0 : 1);
}

TEST_CASE("recv and poll in the child return promptly on a stop request") {
  tandem::test::watchdog guard{30s};
  tandem::runtime rt;
  mp::process p{with(mp::start_method::forkserver), recv_until_stopped};
  p.start();
  REQUIRE(p.join(20s));
  CHECK(p.exitcode() == 0);
}

// receive with a stop token: false once another thread requests a stop; exit code 0 then.
void receive_until_stopped() {
  // On the heap: GCC 12 warns (wrongly) that a local std::stop_source may be uninitialized.
  auto source_owner = std::make_unique<std::stop_source>();
  auto& source = *source_owner;
  std::thread stopper{[&] {
    std::this_thread::sleep_for(100ms);
    source.request_stop();
  }};
  bool handled = mp::receive(source.get_token(), [](int) {});
  stopper.join();
  mp::exit(handled ? 1 : 0);
}

TEST_CASE("receive in the child returns false promptly on a stop request") {
  tandem::test::watchdog guard{30s};
  tandem::runtime rt;
  mp::process p{with(mp::start_method::forkserver), receive_until_stopped};
  p.start();
  REQUIRE(p.join(20s));
  CHECK(p.exitcode() == 0);
}
