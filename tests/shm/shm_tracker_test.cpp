// The segment tracker: a dead owner's segments are removed, nobody else's are.
//
// Each case runs the owner in a forked child, kills it with SIGKILL, and waits (polling, bounded)
// for the outcome. To show that something was *not* removed, the child also owns a marker
// segment: once the marker is gone, the child's tracker has done all its work.
#include "shm/shm_support.hpp"
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/detail/shm_named.hpp>
#include <tandem/mp/detail/shm_tracker.hpp>
#include <tandem/mp/shared_memory.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;
using tandem::mp::shared_memory;
namespace shm = tandem::test::shm;
namespace d = tandem::mp::detail;

namespace {

// Blocks a child until it is killed.
[[noreturn]] void wait_to_be_killed() {
  for (;;) ::pause();
}

// The parent of `pid` (not necessarily our child), or 0.
pid_t parent_of(pid_t pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return 0;
  char buf[1024] = {};
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  std::string line{buf, n};
  auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  int ppid = 0;
  char state = 0;
  if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2) return 0;
  return ppid;
}

} // namespace

TEST_SUITE("shm tracker") {

  TEST_CASE("a segment whose owner is killed by SIGKILL is removed and the tracker exits") {
    tandem::test::watchdog guard{20s};
    shm::scoped_name n{"killed"};
    shm::report_pipe report;
    pid_t owner = shm::fork_child([&]() -> int {
      report.child_side();
      auto seg = shared_memory::create(n.name, 100);
      report.send(std::to_string(d::shm_tracker_pid()));
      wait_to_be_killed();
    });
    report.parent_side();
    auto line = report.receive();
    REQUIRE(line.has_value());
    pid_t tracker = std::stoi(*line);
    CHECK(tracker > 0);
    CHECK(shm::exists(n.name));
    shm::kill_child(owner);
    CHECK(shm::eventually([&] { return !shm::exists(n.name); }, 5s));
    CHECK(shm::eventually([&] { return shm::process_gone(tracker); }, 5s));
  }

  TEST_CASE("a segment whose owner exits without unlinking it is removed") {
    tandem::test::watchdog guard{20s};
    shm::scoped_name n{"exited"};
    pid_t owner = shm::fork_child([&]() -> int {
      auto seg = shared_memory::create(n.name, 100);
      return seg.owned() ? 0 : 1;
    });
    CHECK(shm::wait_child(owner) == 0);
    CHECK(shm::eventually([&] { return !shm::exists(n.name); }, 5s));
  }

  TEST_CASE("a segment closed by its owner is still removed when the owner dies") {
    tandem::test::watchdog guard{20s};
    shm::scoped_name n{"closed"};
    shm::report_pipe report;
    pid_t owner = shm::fork_child([&]() -> int {
      report.child_side();
      { auto seg = shared_memory::create(n.name, 100); } // closed by its destructor
      report.send("ready");
      wait_to_be_killed();
    });
    report.parent_side();
    REQUIRE(report.receive() == "ready");
    CHECK(shm::exists(n.name));
    shm::kill_child(owner);
    CHECK(shm::eventually([&] { return !shm::exists(n.name); }, 5s));
  }

  TEST_CASE("a process that only attached never removes the segment") {
    tandem::test::watchdog guard{20s};
    shm::scoped_name marker{"marker"};
    auto sut = shared_memory::create(128);
    shm::report_pipe report;
    pid_t attacher = shm::fork_child([&]() -> int {
      report.child_side();
      auto seg = shared_memory::attach(sut.name());
      seg.buf()[0] = std::byte{1};
      auto mark = shared_memory::create(marker.name, 1); // so that this child has a tracker
      report.send("ready");
      wait_to_be_killed();
    });
    report.parent_side();
    REQUIRE(report.receive() == "ready");
    shm::kill_child(attacher);
    // Once the marker is gone, the attacher's tracker has finished.
    CHECK(shm::eventually([&] { return !shm::exists(marker.name); }, 5s));
    CHECK(shm::exists(sut.name()));
    CHECK(sut.buf()[0] == std::byte{1});
    // And an attacher that exits normally removes nothing either.
    pid_t polite = shm::fork_child([&]() -> int {
      auto seg = shared_memory::attach(sut.name());
      return seg.owned() ? 1 : 0;
    });
    CHECK(shm::wait_child(polite) == 0);
    CHECK(shm::exists(sut.name()));
    sut.unlink();
  }

  TEST_CASE("unlink by the owner ends its ownership of the name") {
    tandem::test::watchdog guard{20s};
    shm::scoped_name n{"handed"};
    shm::scoped_name marker{"marker"};
    shm::report_pipe report;
    pid_t owner = shm::fork_child([&]() -> int {
      report.child_side();
      auto seg = shared_memory::create(n.name, 100);
      seg.unlink();
      auto owned = d::shm_tracker_owned();
      if (std::find(owned.begin(), owned.end(), n.name) != owned.end()) return 1;
      auto mark = shared_memory::create(marker.name, 1);
      report.send("ready");
      wait_to_be_killed();
    });
    report.parent_side();
    REQUIRE(report.receive() == "ready");
    auto mine = shared_memory::create(n.name, 64); // the same name, now this process's
    shm::kill_child(owner);
    CHECK(shm::eventually([&] { return !shm::exists(marker.name); }, 5s));
    CHECK(shm::exists(n.name));
    mine.unlink();
  }

  TEST_CASE("the tracker leaves alone a name that another process unlinked and reused") {
    tandem::test::watchdog guard{20s};
    shm::scoped_name n{"reused"};
    shm::scoped_name marker{"marker"};
    shm::report_pipe report;
    pid_t owner = shm::fork_child([&]() -> int {
      report.child_side();
      auto seg = shared_memory::create(n.name, 100);
      auto mark = shared_memory::create(marker.name, 1);
      report.send("ready");
      wait_to_be_killed();
    });
    report.parent_side();
    REQUIRE(report.receive() == "ready");
    // Not the owner: the owner's tracker still has the name registered.
    shared_memory::attach(n.name).unlink();
    auto mine = shared_memory::create(n.name, 64);
    shm::kill_child(owner);
    CHECK(shm::eventually([&] { return !shm::exists(marker.name); }, 5s));
    CHECK(shm::exists(n.name));
    CHECK(shared_memory::attach(n.name).size() == 64);
    mine.unlink();
  }

  TEST_CASE("an untracked segment survives its creator") {
    tandem::test::watchdog guard{20s};
    shm::scoped_name n{"untracked"};
    shm::scoped_name marker{"marker"};
    shm::report_pipe report;
    pid_t owner = shm::fork_child([&]() -> int {
      report.child_side();
      auto seg = shared_memory::create(n.name, 100, {.track = false});
      if (seg.owned()) return 1;
      auto mark = shared_memory::create(marker.name, 1);
      report.send("ready");
      wait_to_be_killed();
    });
    report.parent_side();
    REQUIRE(report.receive() == "ready");
    shm::kill_child(owner);
    CHECK(shm::eventually([&] { return !shm::exists(marker.name); }, 5s));
    CHECK(shm::exists(n.name));
    shared_memory::attach(n.name).unlink();
  }

  TEST_CASE("a fork child neither keeps its parent's segments nor loses its own") {
    tandem::test::watchdog guard{20s};
    shm::scoped_name parents{"parents"};
    shm::scoped_name childs{"childs"};
    shm::report_pipe report;
    pid_t owner = shm::fork_child([&]() -> int {
      report.child_side();
      auto seg = shared_memory::create(parents.name, 100);
      pid_t grandchild = ::fork();
      if (grandchild == 0) {
        // The inherited handle is not this process's to own; its own create is.
        if (seg.owned() || d::shm_tracker_pid() != 0) ::_exit(1);
        auto own = shared_memory::create(childs.name, 100);
        report.send(std::to_string(::getpid()));
        wait_to_be_killed();
      }
      wait_to_be_killed();
    });
    report.parent_side();
    auto line = report.receive();
    REQUIRE(line.has_value());
    pid_t grandchild = std::stoi(*line);
    shm::kill_child(owner);
    // The parent's segment goes although the child that inherited it is alive...
    CHECK(shm::eventually([&] { return !shm::exists(parents.name); }, 5s));
    CHECK_FALSE(shm::process_gone(grandchild));
    // ...and the child's own segment stays until the child dies.
    CHECK(shm::exists(childs.name));
    ::kill(grandchild, SIGKILL);
    CHECK(shm::eventually([&] { return !shm::exists(childs.name); }, 5s));
  }

  TEST_CASE("a killed tracker is replaced on the next create and learns every owned segment") {
    tandem::test::watchdog guard{20s};
    shm::scoped_name first{"first"};
    shm::scoped_name second{"second"};
    shm::report_pipe report;
    pid_t owner = shm::fork_child([&]() -> int {
      report.child_side();
      auto a = shared_memory::create(first.name, 100);
      pid_t old = d::shm_tracker_pid();
      ::kill(old, SIGKILL);
      if (!shm::eventually([&] { return shm::process_gone(old); }, 5s)) return 2;
      auto b = shared_memory::create(second.name, 100);
      pid_t fresh = d::shm_tracker_pid();
      if (fresh == 0 || fresh == old) return 3;
      report.send("ready");
      wait_to_be_killed();
    });
    report.parent_side();
    auto line = report.receive();
    REQUIRE(line == "ready");
    shm::kill_child(owner);
    CHECK(
        shm::eventually([&] { return !shm::exists(first.name) && !shm::exists(second.name); }, 5s));
  }

  TEST_CASE("the tracker is nobody's child here and holds none of its owner's descriptors") {
    tandem::test::watchdog guard{20s};
    pid_t owner = shm::fork_child([&]() -> int {
      int fds[2];
      if (::pipe(fds) != 0) return 2;
      auto seg = shared_memory::create(1); // starts the tracker while the pipe is open
      pid_t tracker = d::shm_tracker_pid();
      seg.unlink();
      if (tracker <= 0) return 3;
      int status = 0;
      if (::waitpid(tracker, &status, WNOHANG) != -1 || errno != ECHILD) return 4;
      if (parent_of(tracker) == ::getpid()) return 5;
      // If the tracker had kept the write end, the read end would not see end of file.
      ::close(fds[1]);
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, 2000) != 1) return 6;
      char c;
      if (::read(fds[0], &c, 1) != 0) return 7;
      return 0;
    });
    CHECK(shm::wait_child(owner) == 0);
  }

  TEST_CASE("the owner's segments are registered until it unlinks them") {
    tandem::test::watchdog guard{10s};
    auto sut = shared_memory::create(16);
    auto owned = d::shm_tracker_owned();
    CHECK(std::find(owned.begin(), owned.end(), sut.name()) != owned.end());
    CHECK(d::shm_tracker_pid() > 0);
    sut.close();
    owned = d::shm_tracker_owned();
    CHECK(std::find(owned.begin(), owned.end(), sut.name()) != owned.end());
    sut.unlink();
    owned = d::shm_tracker_owned();
    CHECK(std::find(owned.begin(), owned.end(), sut.name()) == owned.end());
  }

} // TEST_SUITE
