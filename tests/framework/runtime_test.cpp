// tandem::runtime: the actor system it owns, CAF's options, and shutdown (joining non-daemon
// threads, stopping daemon threads, returning by a deadline).
#include <tandem/detail/caf.hpp>
#include <tandem/error.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include "framework/thread_support.hpp"
#include "support/watchdog.hpp"

#include <doctest/doctest.h>

#include <caf/scoped_actor.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using tandem::test::gate;

namespace {

// argv as CAF expects it: mutable C strings.
struct args {
  explicit args(std::vector<std::string> xs) : strings(std::move(xs)) {
    for (auto& s : strings) pointers.push_back(s.data());
    pointers.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(strings.size()); }
  char** argv() { return pointers.data(); }

  std::vector<std::string> strings;
  std::vector<char*> pointers;
};

bool round_trip(caf::actor_system& sys) {
  caf::scoped_actor self{sys};
  self->send(self, 42);
  bool got = false;
  self->receive([&](int x) { got = x == 42; });
  return got;
}

} // namespace

TEST_SUITE("runtime") {

  TEST_CASE("a default constructed runtime owns a working actor system") {
    tandem::test::watchdog guard{30s};
    tandem::runtime sut;
    CHECK(round_trip(sut.system()));
    CHECK_FALSE(sut.help_printed());
    CHECK(sut.remainder().empty());
  }

  TEST_CASE("CAF command line options reach the actor system") {
    tandem::test::watchdog guard{30s};
    args a{{"program", "--scheduler.max-threads=3", "positional"}};
    tandem::runtime sut{a.argc(), a.argv()};
    CHECK(sut.system().scheduler().num_workers() == 3);
    CHECK(sut.remainder() == std::vector<std::string>{"positional"});
    CHECK(round_trip(sut.system()));
  }

  TEST_CASE("the runtime reads the configuration file named on the command line") {
    tandem::test::watchdog guard{30s};
    auto path = "/tmp/tandem-runtime-test-" + std::to_string(::getpid()) + ".ini";
    {
      std::ofstream ini{path};
      ini << "[scheduler]\nmax-threads=5\n";
    }
    args a{{"program", "--config-file=" + path}};
    {
      tandem::runtime sut{a.argc(), a.argv()};
      CHECK(sut.system().scheduler().num_workers() == 5);
    }
    std::remove(path.c_str());
  }

  TEST_CASE("an unknown option is a value error and leaves no runtime behind") {
    tandem::test::watchdog guard{30s};
    args a{{"program", "--no-such-option=1"}};
    CHECK_THROWS_AS(tandem::runtime(a.argc(), a.argv()), tandem::value_error);
    tandem::runtime sut; // the failed one did not keep its claim
    CHECK(&tandem::runtime::current() == &sut);
  }

  TEST_CASE("a user configuration is used as it is") {
    tandem::test::watchdog guard{30s};
    auto cfg = std::make_unique<caf::actor_system_config>();
    cfg->set("scheduler.max-threads", 2);
    tandem::runtime sut{std::move(cfg)};
    CHECK(sut.system().scheduler().num_workers() == 2);
  }

  TEST_CASE("the runtime registers the tandem error category") {
    tandem::test::watchdog guard{30s};
    tandem::runtime sut;
    auto text = sut.system().render(tandem::make_error(tandem::errc::shut_down));
    CHECK(text.find("tandem::shut_down") != std::string::npos);
  }

  TEST_CASE("a second runtime is a usage error while the first exists") {
    tandem::test::watchdog guard{30s};
    {
      tandem::runtime first;
      CHECK_THROWS_AS(tandem::runtime{}, tandem::usage_error);
      CHECK(&tandem::runtime::current() == &first);
    }
    tandem::runtime again; // allowed once the first is gone
    CHECK(&tandem::runtime::current() == &again);
  }

  TEST_CASE("current falls back to a default runtime when the program has none") {
    tandem::test::watchdog guard{30s};
    auto& sut = tandem::runtime::current();
    CHECK(&tandem::runtime::current() == &sut);
    CHECK(round_trip(sut.system()));
    {
      tandem::runtime mine;
      CHECK(&tandem::runtime::current() == &mine);
    }
    CHECK(&tandem::runtime::current() == &sut);
  }

  TEST_CASE("a program without a runtime uses the default one and exits cleanly") {
    tandem::test::watchdog guard{60s};
    auto sut = tandem::test::run_child("default_runtime_exit");
    CHECK(sut.status == 0);
    CHECK(sut.out == "actor system works\nworker finished\n");
  }

  TEST_CASE("shutdown joins non-daemon threads including orphans started by other threads") {
    tandem::test::watchdog guard{30s};
    tandem::runtime sut;
    gate release;
    std::atomic<bool> parent_done{false}, orphan_done{false}, orphan_started{false};
    tandem::thread parent{[&] {
      tandem::thread orphan{[&] {
        orphan_started = true;
        release.wait();
        orphan_done = true;
      }};
      orphan.start();
      release.wait();
      parent_done = true;
    }};
    parent.start();
    REQUIRE(tandem::test::wait_until([&] { return orphan_started.load(); }));
    std::atomic<pid_t> shutdown_tid{0};
    std::atomic<int> joined{-1};
    std::atomic<bool> saw_all_done{false};
    std::thread closer{[&] {
      shutdown_tid = tandem::test::tid();
      joined = sut.shutdown();
      saw_all_done = parent_done && orphan_done;
    }};
    REQUIRE(tandem::test::wait_until([&] { return shutdown_tid.load() != 0; }));
    pid_t tids[] = {shutdown_tid.load()};
    REQUIRE(tandem::test::wait_until_blocked(tids));
    CHECK(joined == -1); // still waiting for the two threads
    release.open();
    closer.join();
    CHECK(joined == 1);
    CHECK(saw_all_done.load());
    CHECK_FALSE(parent.is_alive());
  }

  TEST_CASE("shutdown sends daemon threads a stop request and does not wait for them") {
    tandem::test::watchdog guard{30s};
    tandem::runtime sut;
    gate never, release;
    std::atomic<bool> stopped{false};
    tandem::thread listener{{.daemon = true}, [&](std::stop_token st) {
                              if (!never.wait(st)) stopped = true;
                            }};
    tandem::thread stubborn{{.daemon = true}, [&] { release.wait(); }}; // ignores stop requests
    listener.start();
    stubborn.start();
    auto begin = clock_type::now();
    CHECK(sut.shutdown(10s));
    CHECK(clock_type::now() - begin < 5s);
    CHECK(stubborn.get_stop_token().stop_requested());
    CHECK(listener.join(5s));
    CHECK(stopped.load());
    CHECK(stubborn.is_alive());
    release.open();
    CHECK(stubborn.join(5s));
  }

  TEST_CASE("shutdown returns by its deadline with a non-daemon thread that never ends") {
    tandem::test::watchdog guard{30s};
    gate release;
    std::optional<tandem::thread> stuck;
    {
      tandem::runtime sut;
      stuck.emplace([&] { release.wait(); }); // ignores stop requests
      stuck->start();
      auto begin = clock_type::now();
      CHECK_FALSE(sut.shutdown(300ms));
      auto waited = clock_type::now() - begin;
      CHECK(waited >= 180ms);
      CHECK(waited < 3s);
      CHECK(stuck->is_alive());
      CHECK(stuck->get_stop_token().stop_requested()); // stragglers are asked to stop
    }                                                  // the destructor does not wait again
    CHECK(stuck->is_alive());
    release.open(); // let it end, so the test process can exit
    CHECK(stuck->join(5s));
  }

  TEST_CASE("the destructor of the runtime joins non-daemon threads") {
    tandem::test::watchdog guard{30s};
    gate release;
    std::atomic<bool> done{false};
    pid_t main_tid = tandem::test::tid();
    std::optional<std::thread> opener;
    {
      tandem::runtime sut;
      tandem::thread worker{[&] {
        release.wait();
        done = true;
      }};
      worker.start();
      // Once the main thread blocks (in the runtime's destructor), the worker may end.
      opener.emplace([&] {
        tandem::test::wait_until([&] { return tandem::test::is_blocked(main_tid); });
        release.open();
      });
    }
    CHECK(done.load());
    opener->join();
  }
}
