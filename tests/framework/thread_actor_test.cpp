// detail::make_thread_actor and <tandem/receive.hpp>: CAF actors message, request, monitor and
// link to a plain std::thread that owns a tandem::mailbox and a thread actor, and the thread
// answers, sends, monitors and links back. A fresh actor_system per case; every CAF actor a case
// spawns ends before the case does (the actor system's destructor waits for them).
#include <tandem/detail/caf.hpp>
#include <tandem/detail/thread_actor.hpp>
#include <tandem/detail/thread_state.hpp>
#include <tandem/error.hpp>
#include <tandem/mailbox.hpp>
#include <tandem/receive.hpp>

#include "support/watchdog.hpp"

#include <doctest/doctest.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/system_messages.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

using namespace std::chrono_literals;

namespace {

template <class T>
using promise_ptr = std::shared_ptr<std::promise<T>>;

template <class T>
promise_ptr<T> make_promise() {
  return std::make_shared<std::promise<T>>();
}

// Waits for a result an actor or thread promised; a missing one fails the case (the watchdog
// covers a hang elsewhere).
template <class T>
T await(std::future<T>& f) {
  REQUIRE(f.wait_for(8s) == std::future_status::ready);
  return f.get();
}

// A std::thread that owns a mailbox and a thread actor, speaks as that actor while `body`
// runs, and terminates the actor when `body` ends (with the exception it threw, if any), as
// tandem::thread does.
class plain_thread {
public:
  template <class F>
  plain_thread(caf::actor_system& sys, F body,
               std::stop_source stop = std::stop_source{std::nostopstate})
      : mailbox_(std::make_shared<tandem::mailbox>()),
        self_(tandem::detail::make_thread_actor(sys, mailbox_, "plain", std::move(stop))),
        thread_([this, body]() mutable { run(body); }) {}

  plain_thread(const plain_thread&) = delete;
  plain_thread& operator=(const plain_thread&) = delete;

  ~plain_thread() {
    if (thread_.joinable()) {
      // A body still blocked in a receive ends with shut_down_error.
      mailbox_->shutdown(true);
      thread_.join();
    }
  }

  const caf::actor& actor() const { return self_; }

  tandem::mailbox& mailbox() { return *mailbox_; }

  void join() { thread_.join(); }

private:
  template <class F>
  void run(F& body) {
    std::exception_ptr eptr;
    {
      tandem::detail::thread_actor_scope scope{self_};
      try {
        body();
      } catch (...) {
        eptr = std::current_exception();
      }
    }
    tandem::detail::terminate_thread_actor(self_, eptr);
  }

  std::shared_ptr<tandem::mailbox> mailbox_;
  caf::actor self_;
  std::thread thread_;
};

// Sends an exit to a CAF actor when the case ends, so the actor system can shut down.
struct actor_guard {
  caf::actor actor;
  ~actor_guard() { caf::anon_send_exit(actor, caf::exit_reason::user_shutdown); }
};

struct reply_result {
  int value = 0;
  caf::error error;
};

// Requests `value` from `target` and reports the reply_result (or the error) once.
class requester : public caf::event_based_actor {
public:
  requester(caf::actor_config& cfg, caf::actor target, int value, promise_ptr<reply_result> result)
      : caf::event_based_actor(cfg), target_(std::move(target)), value_(value),
        result_(std::move(result)) {}

  caf::behavior make_behavior() override {
    request(target_, caf::infinite, value_)
        .then(
            [this](int x) {
              result_->set_value(reply_result{x, {}});
              quit();
            },
            [this](caf::error& err) {
              result_->set_value(reply_result{0, err});
              quit();
            });
    return {[](const std::string&) {}};
  }

private:
  caf::actor target_;
  int value_;
  promise_ptr<reply_result> result_;
};

// Sends ("hello", 20) to `target` and reports the int it gets back.
class greeter : public caf::event_based_actor {
public:
  greeter(caf::actor_config& cfg, caf::actor target, promise_ptr<int> result)
      : caf::event_based_actor(cfg), target_(std::move(target)), result_(std::move(result)) {}

  caf::behavior make_behavior() override {
    send(target_, std::string{"hello"}, 20);
    return {[this](int x) {
      result_->set_value(x);
      quit();
    }};
  }

private:
  caf::actor target_;
  promise_ptr<int> result_;
};

// Doubles the ints it gets; the result goes back to the sender as a message.
class doubler : public caf::event_based_actor {
public:
  explicit doubler(caf::actor_config& cfg) : caf::event_based_actor(cfg) {}

  caf::behavior make_behavior() override {
    return {[](int x) { return x * 2; }};
  }
};

// Monitors (or links to and traps exits of) `target` and reports the exit reason it learns.
class watcher : public caf::event_based_actor {
public:
  watcher(caf::actor_config& cfg, caf::actor target, bool link, promise_ptr<void> ready,
          promise_ptr<caf::error> reason)
      : caf::event_based_actor(cfg), target_(std::move(target)), link_(link),
        ready_(std::move(ready)), reason_(std::move(reason)) {}

  caf::behavior make_behavior() override {
    if (link_) {
      set_exit_handler([this](caf::exit_msg& m) {
        reason_->set_value(m.reason);
        quit();
      });
      link_to(target_);
    } else {
      set_down_handler([this](caf::down_msg& m) {
        reason_->set_value(m.reason);
        quit();
      });
      monitor(target_);
    }
    ready_->set_value();
    return {[](const std::string&) {}};
  }

private:
  caf::actor target_;
  bool link_;
  promise_ptr<void> ready_;
  promise_ptr<caf::error> reason_;
};

// An actor that only echoes ints (so a request can tell that it runs); linked to `peer` when
// that is valid. Like every actor that does not trap exits, it dies with a failing peer.
class idler : public caf::event_based_actor {
public:
  idler(caf::actor_config& cfg, caf::actor peer) : caf::event_based_actor(cfg), peer_(peer) {}

  caf::behavior make_behavior() override {
    if (peer_) link_to(peer_);
    return {[](int x) { return x; }};
  }

private:
  caf::actor peer_;
};

caf::error spawn_and_watch(caf::actor_system& sys, plain_thread& t, bool link,
                           std::promise<void>& start) {
  auto ready = make_promise<void>();
  auto reason = make_promise<caf::error>();
  auto ready_f = ready->get_future();
  auto reason_f = reason->get_future();
  // The handle keeps the watcher alive: a monitor or link alone holds only a weak reference.
  auto w = sys.spawn<watcher>(t.actor(), link, ready, reason);
  await(ready_f);
  start.set_value();
  return await(reason_f);
}

bool is_exit_reason(const caf::error& err, caf::exit_reason reason) {
  return err == caf::make_error(reason);
}

} // namespace

TEST_SUITE("thread_actor") {

  TEST_CASE("a CAF actor messages a plain std::thread and gets its answer") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    std::atomic<bool> sender_known{false};
    plain_thread sut{sys, [&] {
                       tandem::receive([&](const std::string& s, int n) {
                         sender_known = static_cast<bool>(tandem::current_sender());
                         return static_cast<int>(s.size()) + n;
                       });
                     }};
    auto result = make_promise<int>();
    auto answer = result->get_future();

    auto greeter_handle = sys.spawn<greeter>(sut.actor(), result);

    CHECK(await(answer) == 25);
    sut.join();
    CHECK(sender_known.load());
  }

  TEST_CASE("an event-based actor's request is answered by the handler's return value") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    plain_thread sut{sys, [] { tandem::receive([](int x) { return x + 1; }); }};
    auto result = make_promise<reply_result>();
    auto answer = result->get_future();

    auto requester_handle = sys.spawn<requester>(sut.actor(), 41, result);

    auto r = await(answer);
    CHECK_FALSE(r.error);
    CHECK(r.value == 42);
  }

  TEST_CASE("tandem reply answers a request from inside a handler") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    plain_thread sut{sys, [] {
                       tandem::receive([](int x) {
                         tandem::reply(x * 10);
                         tandem::reply(-1); // one answer per message: ignored
                       });
                     }};
    auto result = make_promise<reply_result>();
    auto answer = result->get_future();

    auto requester_handle = sys.spawn<requester>(sut.actor(), 4, result);

    CHECK(await(answer).value == 40);
  }

  TEST_CASE("a request taken with get is answered later from another thread") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    plain_thread sut{sys, [&] {
                       auto e = tandem::detail::current_mailbox()->get();
                       std::thread helper{[e = std::move(e)]() mutable {
                         e.reply(e.content().get_as<int>(0) * 3);
                       }};
                       helper.join();
                     }};
    auto result = make_promise<reply_result>();
    auto answer = result->get_future();

    auto requester_handle = sys.spawn<requester>(sut.actor(), 5, result);

    CHECK(await(answer).value == 15);
  }

  TEST_CASE("a request whose envelope is dropped unanswered gets an error") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    std::promise<void> done;
    plain_thread sut{sys, [&] {
                       (void)tandem::detail::current_mailbox()->get(); // taken and dropped
                       done.get_future().wait();
                     }};
    auto result = make_promise<reply_result>();
    auto answer = result->get_future();

    auto requester_handle = sys.spawn<requester>(sut.actor(), 1, result);

    auto r = await(answer);
    done.set_value();
    CHECK(r.error == caf::make_error(caf::sec::request_receiver_down));
  }

  TEST_CASE("send_to makes the thread the sender so the actor's answer lands in its mailbox") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    actor_guard echo{sys.spawn<doubler>()};
    std::atomic<int> got{0};
    plain_thread sut{sys, [&] {
                       tandem::send_to(echo.actor, 21);
                       tandem::receive([&](int x) { got = x; }, 5s);
                     }};

    sut.join();

    CHECK(got == 42);
  }

  TEST_CASE("a thread talks to an actor many times in a row") {
    tandem::test::watchdog guard{30s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    actor_guard echo{sys.spawn<doubler>()};
    std::atomic<int> correct{0};
    constexpr int rounds = 2000;
    plain_thread sut{sys, [&] {
                       for (int i = 0; i < rounds; ++i) {
                         tandem::send_to(echo.actor, i);
                         tandem::receive(
                             [&](int x) {
                               if (x == 2 * i) ++correct;
                             },
                             5s);
                       }
                     }};

    sut.join();

    CHECK(correct == rounds);
  }

  TEST_CASE("monitoring actors get a normal down message when the thread ends cleanly") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    std::promise<void> start;
    auto started = start.get_future();
    plain_thread sut{sys, [&] { started.wait(); }};

    auto reason = spawn_and_watch(sys, sut, false, start);

    CHECK_FALSE(reason);
    CHECK(is_exit_reason(reason, caf::exit_reason::normal));
  }

  TEST_CASE("monitoring actors get the exception text when the target threw") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    std::promise<void> start;
    auto started = start.get_future();
    plain_thread sut{sys, [&] {
                       started.wait();
                       throw std::runtime_error{"worker failed: disk full"};
                     }};

    auto reason = spawn_and_watch(sys, sut, false, start);

    CHECK(reason.category() == caf::atom("exit"));
    CHECK(reason.code() == static_cast<std::uint8_t>(caf::exit_reason::unhandled_exception));
    CHECK(tandem::detail::error_text(reason) == "worker failed: disk full");
  }

  TEST_CASE("a monitor set after the thread ended gets the down message at once") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    plain_thread sut{sys, [] { throw std::logic_error{"early"}; }};
    sut.join();
    caf::scoped_actor self{sys};
    caf::error reason;

    self->monitor(sut.actor());
    self->receive([&](caf::down_msg& m) { reason = m.reason; });

    CHECK(tandem::detail::error_text(reason) == "early");
  }

  TEST_CASE("linked actors get an exit message with the thread's exit reason") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    std::promise<void> start;
    auto started = start.get_future();
    plain_thread sut{sys, [&] {
                       started.wait();
                       throw std::runtime_error{"linked failure"};
                     }};

    auto reason = spawn_and_watch(sys, sut, true, start);

    CHECK(reason.code() == static_cast<std::uint8_t>(caf::exit_reason::unhandled_exception));
    CHECK(tandem::detail::error_text(reason) == "linked failure");
  }

  TEST_CASE("a linked actor that does not trap exits dies with the thread's failure") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    std::promise<void> start;
    auto started = start.get_future();
    plain_thread sut{sys, [&] {
                       started.wait();
                       throw std::runtime_error{"take the peer down"};
                     }};
    auto peer = sys.spawn<idler>(sut.actor());
    caf::scoped_actor self{sys};
    self->monitor(peer);
    // The link is made in the peer's make_behavior: wait for it through a round trip to the peer.
    self->request(peer, caf::infinite, 0).receive([](int) {}, [](caf::error&) {});
    caf::error reason;

    start.set_value();
    self->receive([&](caf::down_msg& m) { reason = m.reason; });

    CHECK(tandem::detail::error_text(reason) == "take the peer down");
  }

  TEST_CASE("requests sent after the thread ended get an error instead of hanging") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    plain_thread sut{sys, [] {}};
    sut.join();
    auto result = make_promise<reply_result>();
    auto answer = result->get_future();

    auto requester_handle = sys.spawn<requester>(sut.actor(), 1, result);

    CHECK(await(answer).error == caf::make_error(caf::sec::request_receiver_down));
    CHECK(sut.mailbox().is_shutdown());
  }

  TEST_CASE("requests left in the mailbox when the thread ends get an error") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    std::promise<void> start;
    auto started = start.get_future();
    plain_thread sut{sys, [&] { started.wait(); }};
    auto result = make_promise<reply_result>();
    auto answer = result->get_future();
    auto requester_handle = sys.spawn<requester>(sut.actor(), 1, result);
    REQUIRE(tandem::test::wait_until([&] { return sut.mailbox().qsize() == 1; }));

    start.set_value();

    CHECK(await(answer).error == caf::make_error(caf::sec::request_receiver_down));
  }

  TEST_CASE("a shut-down mailbox refuses requests with a shut_down error") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    std::promise<void> start;
    auto started = start.get_future();
    plain_thread sut{sys, [&] { started.wait(); }};
    sut.mailbox().shutdown();
    auto result = make_promise<reply_result>();
    auto answer = result->get_future();

    auto requester_handle = sys.spawn<requester>(sut.actor(), 1, result);

    auto r = await(answer);
    start.set_value();
    tandem::errc code{};
    CHECK(tandem::detail::is_tandem_error(r.error, code));
    CHECK(code == tandem::errc::shut_down);
  }

  TEST_CASE("a thread that monitors an actor gets its down message in the mailbox") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    auto target = sys.spawn<idler>(caf::actor{});
    caf::error reason;
    bool down = false;
    plain_thread sut{sys, [&] {
                       tandem::monitor(target);
                       caf::anon_send_exit(target, caf::exit_reason::user_shutdown);
                       down = tandem::receive([&](caf::down_msg& m) { reason = m.reason; }, 5s);
                     }};

    sut.join();

    CHECK(down);
    CHECK(is_exit_reason(reason, caf::exit_reason::user_shutdown));
  }

  TEST_CASE("an actor linked by the thread delivers its exit message and requests a stop") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    auto peer = sys.spawn<idler>(caf::actor{});
    std::stop_source stop;
    caf::error reason;
    plain_thread sut{sys,
                     [&] {
                       tandem::link_to(peer);
                       caf::anon_send_exit(peer, caf::exit_reason::user_shutdown);
                       tandem::receive([&](caf::exit_msg& m) { reason = m.reason; }, 5s);
                     },
                     stop};

    sut.join();

    CHECK(is_exit_reason(reason, caf::exit_reason::user_shutdown));
    CHECK(stop.stop_requested());
  }

  TEST_CASE("the thread actor exposes its mailbox and is told apart from other actors") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    std::promise<void> start;
    auto started = start.get_future();
    plain_thread sut{sys, [&] { started.wait(); }};
    actor_guard other{sys.spawn<doubler>()};

    CHECK(tandem::detail::is_thread_actor(sut.actor()));
    CHECK(tandem::detail::thread_actor_mailbox(sut.actor()).get() == &sut.mailbox());
    CHECK_FALSE(tandem::detail::is_thread_actor(other.actor));
    CHECK(tandem::detail::thread_actor_mailbox(other.actor) == nullptr);
    CHECK_THROWS_AS(tandem::detail::thread_actor_scope{other.actor}, tandem::usage_error);
    start.set_value();
  }

  TEST_CASE("a message sent by mailbox send from inside a thread carries the thread as sender") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    auto inbox = std::make_shared<tandem::mailbox>();
    plain_thread sut{sys, [&] { inbox->send(1); }};
    sut.join();

    auto e = inbox->get();

    CHECK(e.sender() == caf::actor_cast<caf::strong_actor_ptr>(sut.actor()));
  }

  TEST_CASE("the thread actor attachment terminates the actor when its thread state ends") {
    tandem::test::watchdog guard{10s};
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    tandem::detail::thread_state state{tandem::detail::thread_kind::started, {}};
    auto box = std::make_shared<tandem::mailbox>();
    auto self = tandem::detail::make_thread_actor(sys, box, "attached", state.stop);
    state.actor = tandem::detail::make_thread_actor_attachment(self);
    caf::scoped_actor watcher{sys};
    watcher->monitor(self);
    caf::error reason;

    state.tell_exit(std::make_exception_ptr(std::runtime_error{"told"}));
    watcher->receive([&](caf::down_msg& m) { reason = m.reason; });

    CHECK(tandem::detail::error_text(reason) == "told");
    CHECK(box->is_shutdown());
  }

} // TEST_SUITE
