// tandem::thread and the module-level functions: the cases of CPython's
// Lib/test/test_threading.py (ThreadTests, ThreadingExceptionTests, ExceptHookTests,
// ThreadJoinOnShutdown) that apply to C++, and the C++ additions (stop tokens, handles, stack
// size with pthread attributes).
#include <tandem/error.hpp>
#include <tandem/local.hpp>
#include <tandem/thread.hpp>

#include "framework/thread_support.hpp"
#include "support/watchdog.hpp"

#include <doctest/doctest.h>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tandem::test::gate;
using clock_type = std::chrono::steady_clock;

namespace {

bool listed(const tandem::thread& t) {
  auto all = tandem::enumerate();
  return std::find(all.begin(), all.end(), t) != all.end();
}

// The number after the last '-' of a "Thread-N" name.
long name_number(const std::string& name) {
  return std::stol(name.substr(name.rfind('-') + 1));
}

// Restores the default excepthook when a test ends, however it ends.
struct excepthook_guard {
  ~excepthook_guard() { tandem::set_excepthook({}); }
};

// Restores the default stack size when a test ends.
struct stack_size_guard {
  ~stack_size_guard() { tandem::stack_size(0); }
};

struct tracked_arg {
  static inline std::atomic<int> alive{0};
  static inline std::atomic<bool> destroyed_in_other_thread{false};
  std::thread::id made_in = std::this_thread::get_id();

  tracked_arg() { ++alive; }
  tracked_arg(const tracked_arg&) { ++alive; }
  tracked_arg(tracked_arg&&) noexcept { ++alive; }
  ~tracked_arg() { --alive; }
};

} // namespace

TEST_SUITE("thread") {

  TEST_CASE("a thread does not start on construction") {
    tandem::test::watchdog guard{10s};
    std::atomic<bool> ran{false};
    tandem::thread sut{[&] { ran = true; }};
    CHECK_FALSE(sut.is_alive());
    CHECK_FALSE(sut.ident());
    CHECK_FALSE(sut.native_id());
    CHECK_FALSE(listed(sut));
    std::this_thread::sleep_for(20ms); // would be time enough for a thread that started
    CHECK_FALSE(ran.load());
  }

  TEST_CASE("start returns once the thread runs with its ident and native id set") {
    tandem::test::watchdog guard{10s};
    gate release;
    std::optional<std::thread::id> seen_ident;
    long seen_native = 0;
    long seen_tid = 0;
    tandem::thread sut{[&] {
      seen_ident = tandem::get_ident();
      seen_native = tandem::get_native_id();
      seen_tid = tandem::test::tid();
      release.wait();
    }};
    sut.start();
    REQUIRE(sut.ident());
    REQUIRE(sut.native_id());
    CHECK(sut.is_alive());
    CHECK(listed(sut));
    CHECK(*sut.ident() != std::this_thread::get_id());
    CHECK(*sut.native_id() != tandem::get_native_id());
    release.open();
    CHECK(sut.join());
    CHECK(seen_ident == sut.ident());
    CHECK(seen_native == *sut.native_id());
    CHECK(seen_tid == seen_native);
  }

  TEST_CASE("ident and native id are kept after the thread finished") {
    tandem::test::watchdog guard{10s};
    tandem::thread sut{[] {}};
    sut.start();
    auto ident = sut.ident();
    auto native = sut.native_id();
    REQUIRE(sut.join());
    CHECK(sut.ident() == ident);
    CHECK(sut.native_id() == native);
    CHECK_FALSE(sut.is_alive());
  }

  TEST_CASE("the target gets copies of its arguments taken at construction") {
    tandem::test::watchdog guard{10s};
    std::string text = "original";
    std::vector<int> numbers{1, 2, 3};
    int shared_value = 1;
    std::string seen_text;
    std::size_t seen_size = 0;
    tandem::thread sut{[&](std::string s, std::vector<int> v, int& by_ref) {
                         seen_text = s;
                         seen_size = v.size();
                         by_ref = 7;
                       },
                       text, numbers, std::ref(shared_value)};
    text = "changed";
    numbers.clear();
    sut.start();
    REQUIRE(sut.join());
    CHECK(seen_text == "original");
    CHECK(seen_size == 3);
    CHECK(shared_value == 7);
  }

  TEST_CASE("the target and its arguments are destroyed in the thread before join returns") {
    tandem::test::watchdog guard{10s};
    tracked_arg::alive = 0;
    {
      tracked_arg arg;
      auto owned = std::make_shared<int>(5);
      std::weak_ptr<int> watch = owned;
      tandem::thread sut{[owned = std::move(owned)](tracked_arg) { (void)*owned; }, arg};
      CHECK(tracked_arg::alive == 2); // ours and the thread's copy
      sut.start();
      REQUIRE(sut.join());
      CHECK(tracked_arg::alive == 1); // the thread's copy is gone
      CHECK(watch.expired());         // so is the capture of the target
    }
    CHECK(tracked_arg::alive == 0);
  }

  TEST_CASE("a target may take the thread's stop token first") {
    tandem::test::watchdog guard{10s};
    gate never;
    std::atomic<bool> stopped{false};
    tandem::thread sut{[&](std::stop_token st, int x) {
                         CHECK(x == 3);
                         if (!never.wait(st)) stopped = true;
                       },
                       3};
    sut.start();
    CHECK_FALSE(sut.get_stop_token().stop_requested());
    CHECK(sut.request_stop());
    CHECK_FALSE(sut.request_stop()); // only the first request makes it
    REQUIRE(sut.join(5s));
    CHECK(stopped.load());
    CHECK(sut.get_stop_token().stop_requested());
  }

  TEST_CASE("default names count up from Thread-1 and the main thread is MainThread") {
    tandem::test::watchdog guard{10s};
    tandem::thread a{[] {}};
    tandem::thread b{[] {}};
    CHECK(a.name().rfind("Thread-", 0) == 0);
    CHECK(b.name().rfind("Thread-", 0) == 0);
    CHECK(name_number(a.name()) >= 1);
    CHECK(name_number(b.name()) > name_number(a.name()));
    CHECK(tandem::main_thread().name() == "MainThread");
    CHECK(tandem::current_thread().name() == "MainThread");
  }

  TEST_CASE("a thread takes the name given in its options and can be renamed") {
    tandem::test::watchdog guard{10s};
    std::string seen;
    tandem::thread sut{{.name = "worker"}, [&] { seen = tandem::current_thread().name(); }};
    CHECK(sut.name() == "worker");
    sut.name("renamed");
    CHECK(sut.name() == "renamed");
    sut.start();
    REQUIRE(sut.join());
    CHECK(seen == "renamed");
  }

  TEST_CASE("the daemon flag is inherited from the creating thread unless given") {
    tandem::test::watchdog guard{10s};
    CHECK_FALSE(tandem::main_thread().daemon());
    tandem::thread plain{[] {}};
    CHECK_FALSE(plain.daemon());
    tandem::thread explicit_daemon{{.daemon = true}, [] {}};
    CHECK(explicit_daemon.daemon());

    std::atomic<int> child_of_daemon{-1}, overridden{-1}, child_of_non_daemon{-1};
    tandem::thread daemon_parent{{.daemon = true}, [&] {
                                   tandem::thread child{[] {}};
                                   child_of_daemon = child.daemon();
                                   tandem::thread explicit_child{{.daemon = false}, [] {}};
                                   overridden = explicit_child.daemon();
                                 }};
    daemon_parent.start();
    REQUIRE(daemon_parent.join(5s));
    tandem::thread parent{[&] {
      tandem::thread child{[] {}};
      child_of_non_daemon = child.daemon();
    }};
    parent.start();
    REQUIRE(parent.join(5s));
    CHECK(child_of_daemon == 1);
    CHECK(overridden == 0);
    CHECK(child_of_non_daemon == 0);
  }

  TEST_CASE("set_daemon works before start and is a usage error after") {
    tandem::test::watchdog guard{10s};
    gate release;
    tandem::thread sut{[&] { release.wait(); }};
    sut.set_daemon(true);
    CHECK(sut.daemon());
    sut.set_daemon(false);
    CHECK_FALSE(sut.daemon());
    sut.start();
    CHECK_THROWS_AS(sut.set_daemon(true), tandem::usage_error);
    CHECK_FALSE(sut.daemon());
    release.open();
    REQUIRE(sut.join());
    CHECK_THROWS_AS(sut.set_daemon(true), tandem::usage_error);
    CHECK_THROWS_AS(tandem::main_thread().set_daemon(true), tandem::usage_error);
  }

  TEST_CASE("starting a thread twice is a usage error") {
    tandem::test::watchdog guard{10s};
    tandem::thread sut{[] {}};
    sut.start();
    CHECK_THROWS_AS(sut.start(), tandem::usage_error);
    REQUIRE(sut.join());
    CHECK_THROWS_AS(sut.start(), tandem::usage_error);
    try {
      sut.start();
    } catch (const tandem::usage_error& e) {
      CHECK(e.code() == tandem::errc::usage);
      CHECK(std::string{e.what()}.find("started once") != std::string::npos);
    }
  }

  TEST_CASE("joining a thread that was not started is a usage error") {
    tandem::thread sut{[] {}};
    CHECK_THROWS_AS(sut.join(), tandem::usage_error);
    CHECK_THROWS_AS(sut.join(10ms), tandem::usage_error);
  }

  TEST_CASE("joining the current thread is a usage error") {
    tandem::test::watchdog guard{10s};
    CHECK_THROWS_AS(tandem::current_thread().join(), tandem::usage_error);
    CHECK_THROWS_AS(tandem::main_thread().join(0s), tandem::usage_error);
    std::atomic<int> outcome{0};
    tandem::thread sut{[&] {
      try {
        tandem::current_thread().join();
        outcome = 1;
      } catch (const tandem::usage_error&) {
        outcome = 2;
      }
    }};
    sut.start();
    REQUIRE(sut.join());
    CHECK(outcome == 2);
  }

  TEST_CASE("is_alive is true while the body runs and false after join") {
    tandem::test::watchdog guard{10s};
    gate release;
    tandem::thread sut{[&] { release.wait(); }};
    CHECK_FALSE(sut.is_alive());
    sut.start();
    CHECK(sut.is_alive());
    release.open();
    REQUIRE(sut.join());
    CHECK_FALSE(sut.is_alive());
  }

  TEST_CASE("join with a timeout returns false while the thread runs") {
    tandem::test::watchdog guard{10s};
    gate release;
    tandem::thread sut{[&] { release.wait(); }};
    sut.start();
    auto begin = clock_type::now();
    CHECK_FALSE(sut.join(100ms));
    auto waited = clock_type::now() - begin;
    CHECK(waited >= 60ms);
    CHECK(waited < 1s);
    CHECK_FALSE(sut.join(0s));
    CHECK_FALSE(sut.join(-5s));
    CHECK(sut.is_alive());
    release.open();
    CHECK(sut.join(5s));
    CHECK(sut.join(0s)); // joining a finished thread again is fine
  }

  TEST_CASE("join with a stop token returns false promptly when stopped") {
    tandem::test::watchdog guard{10s};
    gate release;
    tandem::thread sut{[&] { release.wait(); }};
    sut.start();
    std::stop_source stop;
    std::atomic<int> joined{-1};
    std::atomic<pid_t> joiner_tid{0};
    std::thread joiner{[&] {
      joiner_tid = tandem::test::tid();
      joined = sut.join(stop.get_token());
    }};
    REQUIRE(tandem::test::wait_until([&] { return joiner_tid.load() != 0; }));
    pid_t tids[] = {joiner_tid.load()};
    REQUIRE(tandem::test::wait_until_blocked(tids));
    stop.request_stop();
    joiner.join();
    CHECK(joined == 0);
    release.open();
    CHECK(sut.join(5s));
  }

  TEST_CASE("several threads may join the same thread") {
    tandem::test::watchdog guard{10s};
    gate release;
    tandem::thread sut{[&] { release.wait(); }};
    sut.start();
    std::atomic<int> joined{0};
    std::vector<std::thread> joiners;
    for (int i = 0; i < 4; ++i)
      joiners.emplace_back([&] {
        if (sut.join(5s)) ++joined;
      });
    release.open();
    for (auto& j : joiners) j.join();
    CHECK(joined == 4);
  }

  TEST_CASE("enumerate and active_count list alive threads and drop them after join") {
    tandem::test::watchdog guard{10s};
    auto before = tandem::active_count();
    CHECK(listed(tandem::main_thread()));
    gate release;
    std::vector<tandem::thread> threads;
    for (int i = 0; i < 3; ++i) threads.emplace_back([&] { release.wait(); });
    for (auto& t : threads) t.start();
    CHECK(tandem::active_count() == before + 3);
    for (auto& t : threads) CHECK(listed(t));
    CHECK(tandem::enumerate().size() == tandem::active_count());
    release.open();
    for (auto& t : threads) {
      REQUIRE(t.join());
      CHECK_FALSE(listed(t));
    }
    CHECK(tandem::active_count() == before);
  }

  TEST_CASE("a thread keeps running when its handle is destroyed") {
    tandem::test::watchdog guard{10s};
    gate release;
    std::atomic<bool> finished{false};
    {
      tandem::thread sut{{.name = "detached-by-scope"}, [&] {
                           release.wait();
                           finished = true;
                         }};
      sut.start();
    }
    std::optional<tandem::thread> found;
    for (auto& t : tandem::enumerate())
      if (t.name() == "detached-by-scope") found.emplace(std::move(t));
    REQUIRE(found);
    CHECK(found->is_alive());
    release.open();
    REQUIRE(found->join(5s));
    CHECK(finished.load());
  }

  TEST_CASE("a moved thread handle still names the same thread") {
    tandem::test::watchdog guard{10s};
    tandem::thread a{[] {}};
    auto name = a.name();
    tandem::thread b = std::move(a);
    CHECK(b.name() == name);
    CHECK_THROWS_AS(a.start(), tandem::usage_error); // NOLINT(bugprone-use-after-move)
    CHECK_FALSE(a.is_alive());
    b.start();
    CHECK(b.join());
    std::vector<tandem::thread> many;
    for (int i = 0; i < 8; ++i) {
      many.emplace_back([] {});
      many.back().start();
    }
    for (auto& t : many) CHECK(t.join(5s));
  }

  TEST_CASE("main_thread is the current thread in main and not in other threads") {
    tandem::test::watchdog guard{10s};
    CHECK(tandem::main_thread() == tandem::current_thread());
    CHECK(tandem::main_thread().ident() == std::this_thread::get_id());
    CHECK(tandem::main_thread().native_id() == tandem::get_native_id());
    CHECK(tandem::main_thread().is_alive());
    CHECK(tandem::get_ident() == tandem::current_thread().ident());
    std::atomic<int> in_thread{-1};
    std::atomic<int> idents_match{-1};
    tandem::thread sut{[&] {
      in_thread = tandem::main_thread() == tandem::current_thread();
      idents_match = tandem::get_ident() == tandem::current_thread().ident();
    }};
    sut.start();
    REQUIRE(sut.join());
    CHECK(in_thread == 0);
    CHECK(idents_match == 1);
  }

  TEST_CASE("current_thread in a foreign thread gives a daemon Dummy thread") {
    tandem::test::watchdog guard{10s};
    gate release;
    std::string name;
    std::atomic<int> daemon{-1}, alive{-1}, join_refused{-1}, child_daemon{-1};
    std::optional<std::thread::id> ident;
    std::optional<long> native;
    std::atomic<bool> ready{false};
    std::thread foreign{[&] {
      auto& me = tandem::current_thread();
      name = me.name();
      daemon = me.daemon();
      alive = me.is_alive();
      ident = me.ident();
      native = me.native_id();
      try {
        me.join(0s);
        join_refused = 0;
      } catch (const tandem::usage_error&) {
        join_refused = 1;
      }
      tandem::thread child{[] {}};
      child_daemon = child.daemon();
      ready = true;
      release.wait();
    }};
    auto foreign_id = foreign.get_id();
    REQUIRE(tandem::test::wait_until([&] { return ready.load(); }));
    CHECK(name.rfind("Dummy-", 0) == 0);
    CHECK(daemon == 1);
    CHECK(alive == 1);
    CHECK(ident == foreign_id);
    REQUIRE(native);
    CHECK(*native > 0);
    CHECK(join_refused == 1);
    CHECK(child_daemon == 1); // as in Python: a dummy thread is a daemon, and so are its children
    std::optional<tandem::thread> handle;
    for (auto& t : tandem::enumerate())
      if (t.ident() == foreign_id) handle.emplace(std::move(t));
    REQUIRE(handle);
    release.open();
    foreign.join(); // the dummy leaves the registry when its thread ends
    CHECK_FALSE(handle->is_alive());
    CHECK_FALSE(listed(*handle));
  }

  TEST_CASE("a subclass runs its own run and is the current thread in it") {
    tandem::test::watchdog guard{10s};
    class counter : public tandem::thread {
    public:
      using thread::thread;
      ~counter() override {
        if (is_alive()) join();
      }
      std::atomic<int> runs{0};
      std::atomic<bool> current_is_this{false};
      std::optional<std::thread::id> ran_in;

    protected:
      void run() override {
        ++runs;
        ran_in = std::this_thread::get_id();
        current_is_this = dynamic_cast<counter*>(&tandem::current_thread()) == this;
      }
    };
    counter sut{{.name = "counter"}};
    CHECK(sut.name() == "counter");
    sut.start();
    REQUIRE(sut.join());
    CHECK(sut.runs == 1);
    CHECK(sut.ran_in == sut.ident());
    CHECK(sut.ran_in != std::this_thread::get_id());
    CHECK(sut.current_is_this.load());
  }

  TEST_CASE("a plain thread without target runs nothing") {
    tandem::test::watchdog guard{10s};
    tandem::thread sut;
    sut.start();
    CHECK(sut.join(5s));
  }

  TEST_CASE("the stack size applies to threads started afterwards") {
    tandem::test::watchdog guard{10s};
    stack_size_guard restore;
    CHECK(tandem::stack_size() == 0);
    CHECK(tandem::stack_size(256 * 1024) == 0);
    CHECK(tandem::stack_size() == 256 * 1024);
    std::size_t seen = 0;
    tandem::thread sut{[&] {
      pthread_attr_t attr;
      if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstacksize(&attr, &seen);
        pthread_attr_destroy(&attr);
      }
    }};
    sut.start();
    REQUIRE(sut.join());
    CHECK(seen >= 256 * 1024);
    CHECK(seen < 1024 * 1024); // far below the 8 MiB default
    CHECK(tandem::stack_size(0) == 256 * 1024);
  }

  TEST_CASE("a stack size below 32 KiB is a value error and changes nothing") {
    stack_size_guard restore;
    CHECK_THROWS_AS(tandem::stack_size(4096), tandem::value_error);
    CHECK_THROWS_AS(tandem::stack_size(32 * 1024 - 1), tandem::value_error);
    CHECK(tandem::stack_size() == 0);
    CHECK(tandem::stack_size(32 * 1024) == 0);
    CHECK(tandem::stack_size() == 32 * 1024);
  }

  TEST_CASE("a thread the system refuses is not listed and can be started later") {
    tandem::test::watchdog guard{10s};
    stack_size_guard restore;
    tandem::stack_size(std::size_t{1} << 60); // no system can map a stack this large
    auto before = tandem::active_count();
    tandem::thread sut{[] {}};
    CHECK_THROWS_AS(sut.start(), tandem::error);
    CHECK_FALSE(sut.is_alive());
    CHECK(tandem::active_count() == before);
    tandem::stack_size(0);
    sut.start();
    CHECK(sut.join(5s));
  }

  TEST_CASE("locals of a thread are destroyed before join returns") {
    tandem::test::watchdog guard{10s};
    static std::atomic<int> alive{0};
    struct counted {
      counted() { ++alive; }
      ~counted() { --alive; }
    };
    alive = 0;
    tandem::local<counted> sut;
    tandem::thread worker{[&] { sut.get(); }};
    worker.start();
    REQUIRE(worker.join());
    CHECK(alive == 0);
  }

  TEST_CASE("threads started and joined from many threads keep the registry consistent") {
    tandem::test::watchdog guard{60s};
    auto before = tandem::active_count();
    const int rounds = std::max(20, static_cast<int>(300 * tandem::test::stress_scale()));
    std::atomic<int> ran{0};
    std::atomic<int> failures{0};
    std::atomic<bool> stop{false};
    std::vector<tandem::thread> starters;
    for (int i = 0; i < 3; ++i) {
      starters.emplace_back([&] {
        for (int r = 0; r < rounds; ++r) {
          tandem::thread t{[&] { ++ran; }};
          t.start();
          if (!t.join(10s)) ++failures;
        }
      });
    }
    // Handles dropped while running, joined by nobody but the registry.
    starters.emplace_back([&] {
      for (int r = 0; r < rounds; ++r) {
        tandem::thread t{[&] { ++ran; }};
        t.start();
      }
    });
    std::thread observer{[&] {
      while (!stop) {
        auto all = tandem::enumerate();
        for (auto& t : all)
          if (t.name().empty()) ++failures;
      }
    }};
    for (auto& t : starters) t.start();
    for (auto& t : starters) REQUIRE(t.join(50s));
    REQUIRE(tandem::test::wait_until([&] { return ran == 4 * rounds; }, 20s));
    bool drained = tandem::test::wait_until([&] { return tandem::active_count() == before; }, 20s);
    stop = true;
    observer.join();
    CHECK(drained);
    CHECK(failures == 0);
  }

  TEST_CASE("attachments hear of the start and of the end with the exception before join returns") {
    tandem::test::watchdog guard{10s};
    excepthook_guard restore;
    tandem::set_excepthook([](const tandem::excepthook_args&) {});
    struct recorder : tandem::detail::thread_attachment {
      std::atomic<int> starts{0}, exits{0};
      std::optional<std::thread::id> started_in, exited_in;
      std::string what;
      void on_start(tandem::detail::thread_state&) noexcept override {
        ++starts;
        started_in = std::this_thread::get_id();
      }
      void on_exit(tandem::detail::thread_state&, const std::exception_ptr& exc) noexcept override {
        ++exits;
        exited_in = std::this_thread::get_id();
        try {
          if (exc) std::rethrow_exception(exc);
        } catch (const std::exception& e) {
          what = e.what();
        }
      }
    };
    auto actor = std::make_shared<recorder>();
    auto other = std::make_shared<recorder>();
    tandem::thread sut{[] { throw std::runtime_error("ended badly"); }};
    auto& state = *tandem::detail::thread_access::state(sut);
    {
      std::lock_guard lock{state.mtx};
      state.actor = actor;
    }
    CHECK(state.attach(other));
    sut.start();
    REQUIRE(sut.join());
    for (auto* r : {actor.get(), other.get()}) {
      CHECK(r->starts == 1);
      CHECK(r->exits == 1);
      CHECK(r->started_in == sut.ident());
      CHECK(r->exited_in == sut.ident());
      CHECK(r->what == "ended badly");
    }
    auto late = std::make_shared<recorder>();
    CHECK_FALSE(state.attach(late)); // too late: the reason is kept instead
    std::lock_guard lock{state.mtx};
    CHECK(state.exit_exception != nullptr);
  }

  TEST_CASE("a thread that calls fork leaves only itself alive in the child") {
    tandem::test::watchdog guard{20s};
    gate release;
    tandem::thread bystander{{.name = "bystander"}, [&] { release.wait(); }};
    bystander.start();
    std::atomic<int> child_status{-1};
    tandem::thread forker{{.name = "forker"}, [&] {
                            std::fflush(nullptr);
                            pid_t pid = ::fork();
                            if (pid == 0) {
                              // Only async-signal-safe-ish checks, then _exit: no exit handlers.
                              int bad = 0;
                              auto all = tandem::enumerate();
                              if (all.size() != 1) bad |= 1;
                              if (!(tandem::main_thread() == tandem::current_thread())) bad |= 2;
                              if (bystander.is_alive()) bad |= 4;
                              ::_exit(bad);
                            }
                            int status = 0;
                            ::waitpid(pid, &status, 0);
                            child_status = WIFEXITED(status) ? WEXITSTATUS(status) : 100;
                          }};
    forker.start();
    REQUIRE(forker.join(15s));
    CHECK(child_status == 0);
    CHECK(bystander.is_alive()); // the parent is untouched
    release.open();
    CHECK(bystander.join(5s));
  }
}

TEST_SUITE("excepthook") {

  TEST_CASE("the default excepthook prints the thread name and the exception") {
    tandem::test::watchdog guard{40s};
    auto sut = tandem::test::run_child("excepthook_default");
    CHECK(sut.status == 0);
    CHECK(sut.out == "joined\n");
    CHECK(sut.err.find("Exception in thread failing-worker:\n") != std::string::npos);
    CHECK(sut.err.find("std::runtime_error: boom in the worker\n") != std::string::npos);
  }

  TEST_CASE("the default excepthook without a thread names the calling thread by its ident") {
    tandem::test::watchdog guard{40s};
    auto sut = tandem::test::run_child("excepthook_no_thread");
    CHECK(sut.status == 0);
    CHECK(sut.err.rfind("Exception in thread ", 0) == 0);
    CHECK(sut.err.find(":\nstd::runtime_error: lonely\n") != std::string::npos);
  }

  TEST_CASE("the default excepthook names the type of an exception that is not a std exception") {
    tandem::test::watchdog guard{40s};
    auto sut = tandem::test::run_child("excepthook_not_std");
    CHECK(sut.status == 0);
    CHECK(sut.out == "joined\n");
    CHECK(sut.err.find("Exception in thread int-thrower:\nint\n") != std::string::npos);
  }

  TEST_CASE("an excepthook that throws is reported and the program goes on") {
    tandem::test::watchdog guard{40s};
    auto sut = tandem::test::run_child("excepthook_raises");
    CHECK(sut.status == 0);
    CHECK(sut.out == "joined\n");
    CHECK(sut.err.find("Exception in threading excepthook:\nstd::logic_error: the hook itself "
                       "failed\n") != std::string::npos);
  }

  TEST_CASE("a custom excepthook runs in the failing thread before join returns") {
    tandem::test::watchdog guard{10s};
    excepthook_guard restore;
    std::string what;
    std::string thread_name;
    std::optional<std::thread::id> ran_in;
    tandem::thread* seen = nullptr;
    bool current_matches = false;
    tandem::set_excepthook([&](const tandem::excepthook_args& args) {
      try {
        std::rethrow_exception(args.exc);
      } catch (const std::exception& e) {
        what = e.what();
      }
      seen = args.thread;
      thread_name = args.thread->name();
      ran_in = std::this_thread::get_id();
      current_matches = args.thread == &tandem::current_thread();
    });
    tandem::thread sut{{.name = "thrower"}, [] { throw std::out_of_range("index 7"); }};
    sut.start();
    REQUIRE(sut.join()); // never rethrows
    CHECK(what == "index 7");
    CHECK(thread_name == "thrower");
    CHECK(seen != nullptr);
    CHECK(current_matches);
    CHECK(ran_in == sut.ident());
  }

  TEST_CASE("the excepthook receives exceptions from a subclass run") {
    tandem::test::watchdog guard{10s};
    excepthook_guard restore;
    class failing : public tandem::thread {
    protected:
      void run() override { throw std::runtime_error("from run"); }
    };
    std::string what;
    tandem::thread* seen = nullptr;
    tandem::set_excepthook([&](const tandem::excepthook_args& args) {
      seen = args.thread;
      try {
        std::rethrow_exception(args.exc);
      } catch (const std::exception& e) {
        what = e.what();
      }
    });
    failing sut;
    sut.start();
    REQUIRE(sut.join());
    CHECK(what == "from run");
    CHECK(seen == &sut);
  }

  TEST_CASE("excepthook returns the hook in effect and an empty hook restores the default") {
    excepthook_guard restore;
    using fn_ptr = void (*)(const tandem::excepthook_args&);
    auto initial = tandem::excepthook();
    REQUIRE(initial.target<fn_ptr>() != nullptr);
    CHECK((*initial.target<fn_ptr>() == &tandem::default_excepthook));
    int calls = 0;
    tandem::set_excepthook([&](const tandem::excepthook_args&) { ++calls; });
    tandem::excepthook()(tandem::excepthook_args{});
    CHECK(calls == 1);
    tandem::set_excepthook({});
    auto restored = tandem::excepthook();
    REQUIRE(restored.target<fn_ptr>() != nullptr);
    CHECK((*restored.target<fn_ptr>() == &tandem::default_excepthook));
  }
}

TEST_SUITE("thread exit") {

  TEST_CASE("returning from main joins a non-daemon thread") {
    tandem::test::watchdog guard{40s};
    auto sut = tandem::test::run_child("exit_joins_non_daemon");
    CHECK(sut.status == 0);
    CHECK(sut.out == "main returns\nworker finished\n");
    CHECK(sut.elapsed >= 180ms);
  }

  TEST_CASE("returning from main joins threads started by other threads without a handle") {
    tandem::test::watchdog guard{40s};
    auto sut = tandem::test::run_child("exit_joins_orphans");
    CHECK(sut.status == 0);
    CHECK(sut.out == "main returns\norphan finished\n");
  }

  TEST_CASE("returning from main sends daemon threads a stop request") {
    tandem::test::watchdog guard{40s};
    auto sut = tandem::test::run_child("exit_stops_daemon");
    CHECK(sut.status == 0);
    CHECK(sut.out == "daemon saw the stop request\n");
  }

  TEST_CASE("a thread joining the main thread does not hold up exit") {
    tandem::test::watchdog guard{40s};
    auto sut = tandem::test::run_child("exit_main_joinable", 20s);
    CHECK(sut.status == 0);
    CHECK(sut.out == "main thread joined\n");
  }

  TEST_CASE("returning from main does not wait for a daemon thread") {
    tandem::test::watchdog guard{40s};
    auto sut = tandem::test::run_child("exit_skips_daemon", 20s);
    CHECK(sut.status == 0);
    CHECK(sut.out == "main returns\n");
    CHECK(sut.elapsed < 10s);
  }
}
