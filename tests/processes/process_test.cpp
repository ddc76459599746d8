// tandem::mp::process: the Process cases of CPython's _test_multiprocessing.py that apply (exit
// codes, sentinel, close, join with a timeout, is_alive, many processes, daemon children,
// parent_process, active_children, cpu_count), each run with the forkserver, the spawn and the fork
// method, and the forkserver's own cases (one server, reused; it dies with the program, and so do
// its daemon children; descriptors and large arguments reach the child; a dead server is
// replaced).
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/pipe.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/runtime.hpp>

#include <doctest/doctest.h>

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace mp = tandem::mp;

namespace {

constexpr mp::start_method methods[] = {mp::start_method::forkserver, mp::start_method::spawn,
                                        mp::start_method::fork};

// The watchdog is a thread, so fork children are allowed with other threads in these tests;
// their targets use nothing another thread could hold.
mp::process_options with(mp::start_method m, bool daemon = false) {
  return {.name = {}, .daemon = daemon, .method = m, .allow_threads = true};
}

// -- targets ------------------------------------------------------------------------------------

void return_normally() {}

void throw_runtime_error() {
  throw std::runtime_error{"boom"};
}

void exit_with(int code) {
  mp::exit(code);
}

// A fork child inherits the test runner's crash handlers; the signal tests need the defaults.
void default_crash_signals() {
  for (int sig : {SIGSEGV, SIGABRT, SIGTERM}) std::signal(sig, SIG_DFL);
}

void segfault() {
  default_crash_signals();
  std::raise(SIGSEGV);
}

void call_abort() {
  default_crash_signals();
  std::abort();
}

void sleep_ms(int ms) {
  default_crash_signals();
  std::this_thread::sleep_for(std::chrono::milliseconds{ms});
}

// Exit 0 when the child sees the identity its parent gave it, else a code naming the mismatch.
void check_identity(std::string name, bool daemon, int parent_pid) {
  if (mp::current_process().name() != name) mp::exit(2);
  if (mp::current_process().daemon() != daemon) mp::exit(3);
  if (mp::current_process().pid() != ::getpid()) mp::exit(4);
  auto parent = mp::parent_process();
  if (!parent || parent->pid() != parent_pid || parent->name() != "MainProcess") mp::exit(5);
  if (!parent->is_alive()) mp::exit(6);
  if (!mp::active_children().empty()) mp::exit(7);
}

void start_a_child() {
  mp::process p{return_normally};
  try {
    p.start();
  } catch (const tandem::usage_error&) {
    mp::exit(3);
  }
  p.join();
  mp::exit(4);
}

// Starts a daemon grandchild that sleeps, reports its pid, and sleeps until killed.
void start_daemon_grandchild(mp::connection report) {
  mp::process grandchild{
      {.name = {}, .daemon = true, .method = mp::start_method::spawn}, sleep_ms, 60'000};
  grandchild.start();
  report.send(static_cast<int>(*grandchild.pid()));
  std::this_thread::sleep_for(60s);
}

// Reports whether its parent is alive, then whether it saw the parent end.
void watch_parent(mp::connection report) {
  auto parent = mp::parent_process();
  report.send(parent && parent->is_alive() ? 1 : 0);
  bool ended = parent && parent->join(20s) && !parent->is_alive();
  report.send(ended ? 1 : 0);
}

void start_parent_watcher(mp::connection report) {
  mp::process grandchild{{.name = {}, .daemon = false, .method = mp::start_method::spawn},
                         watch_parent,
                         std::move(report)};
  grandchild.start();
  std::this_thread::sleep_for(60s);
}

// While it lives, SIGTERM, SIGSEGV and SIGABRT have their default action in this process, so a
// fork child signalled before its target resets them does not run the test runner's crash report.
class default_signals {
public:
  default_signals() {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (std::size_t i = 0; i < std::size(signals_); ++i) ::sigaction(signals_[i], &dfl, &old_[i]);
  }
  default_signals(const default_signals&) = delete;
  default_signals& operator=(const default_signals&) = delete;
  ~default_signals() {
    for (std::size_t i = 0; i < std::size(signals_); ++i)
      ::sigaction(signals_[i], &old_[i], nullptr);
  }

private:
  static constexpr int signals_[] = {SIGTERM, SIGSEGV, SIGABRT};
  struct sigaction old_[3]{};
};

// Says hello (the child is running its target, with its parent-death signal set), then sleeps.
void hello_then_sleep(mp::connection report, int ms) {
  report.send(1);
  std::this_thread::sleep_for(std::chrono::milliseconds{ms});
}

// Reports the child's OS parent: the forkserver for a forkserver child.
void report_ppid(mp::connection report) {
  report.send(static_cast<int>(::getppid()));
}

void report_ppid_then_sleep(mp::connection report, int ms) {
  report.send(static_cast<int>(::getppid()));
  std::this_thread::sleep_for(std::chrono::milliseconds{ms});
}

// Starts a forkserver grandchild (a daemon or not) that reports its pid and its OS parent (the
// server), then sleeps until killed.
void start_forkserver_grandchild(mp::connection report, bool daemon) {
  auto [ours, theirs] = mp::pipe();
  mp::process grandchild{{.name = {}, .daemon = daemon, .method = mp::start_method::forkserver},
                         report_ppid_then_sleep,
                         std::move(theirs),
                         60'000};
  grandchild.start();
  auto server = ours.recv<int>();
  report.send(static_cast<int>(*grandchild.pid()));
  report.send(server);
  std::this_thread::sleep_for(60s);
}

// Echoes one message, reversed, on the connection it was given.
void echo_reversed(mp::connection conn) {
  auto bytes = conn.recv_bytes();
  std::reverse(bytes.begin(), bytes.end());
  conn.send_bytes(bytes);
}

// Exit 0 when the big argument arrived intact.
void check_big(std::string big, std::size_t size) {
  if (big.size() != size) mp::exit(2);
  for (std::size_t i = 0; i < big.size(); ++i)
    if (big[i] != static_cast<char>('a' + i % 26)) mp::exit(3);
}

// The parent pid of `pid` (the fourth field of /proc/PID/stat), or 0 when it is gone.
pid_t parent_of(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string line;
  if (!std::getline(in, line)) return 0;
  auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream rest{line.substr(close_paren + 2)};
  char state = 0;
  long ppid = 0;
  rest >> state >> ppid;
  return static_cast<pid_t>(ppid);
}

int start_and_join(mp::process& p) {
  p.start();
  REQUIRE(p.join(20s));
  return p.exitcode().value_or(1000);
}

bool readable(int fd, int ms) {
  pollfd pfd{fd, POLLIN, 0};
  return ::poll(&pfd, 1, ms) == 1;
}

bool process_ends(pid_t pid, std::chrono::milliseconds limit) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u));
  if (fd < 0) return true; // already gone and collected
  bool ended = readable(fd, static_cast<int>(limit.count()));
  ::close(fd);
  return ended;
}

} // namespace

TEST_SUITE("process") {

  TEST_CASE(
      "exit codes follow Python's: return 0 exception 1 exit(n) mod 256 and minus the signal") {
    tandem::test::watchdog guard{60s};
    default_signals dfl;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process ok{with(m), return_normally};
      CHECK(start_and_join(ok) == 0);
      mp::process thrown{with(m), throw_runtime_error};
      CHECK(start_and_join(thrown) == 1);
      mp::process exited{with(m), exit_with, 7};
      CHECK(start_and_join(exited) == 7);
      mp::process wrapped{with(m), exit_with, 300};
      CHECK(start_and_join(wrapped) == 300 % 256);
      mp::process crashed{with(m), segfault};
      CHECK(start_and_join(crashed) == -SIGSEGV);
      mp::process aborted{with(m), call_abort};
      CHECK(start_and_join(aborted) == -SIGABRT);

      mp::process killed{with(m), sleep_ms, 30'000};
      killed.start();
      killed.kill();
      REQUIRE(killed.join(20s));
      CHECK(killed.exitcode() == -SIGKILL);
      mp::process terminated{with(m), sleep_ms, 30'000};
      terminated.start();
      terminated.terminate();
      REQUIRE(terminated.join(20s));
      CHECK(terminated.exitcode() == -SIGTERM);
      terminated.terminate(); // after the end: nothing happens
      CHECK(terminated.exitcode() == -SIGTERM);
    }
    CHECK(mp::active_children().empty());
  }

  TEST_CASE("a child sees its name and daemon flag and its parent") {
    tandem::test::watchdog guard{30s};
    CHECK(mp::current_process().name() == "MainProcess");
    CHECK_FALSE(mp::current_process().daemon());
    CHECK(mp::current_process().is_alive());
    CHECK_FALSE(mp::parent_process().has_value());
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      for (bool daemon : {false, true}) {
        mp::process p{{.name = "worker", .daemon = daemon, .method = m, .allow_threads = true},
                      check_identity,
                      std::string{"worker"},
                      daemon,
                      static_cast<int>(::getpid())};
        CHECK(p.name() == "worker");
        CHECK(start_and_join(p) == 0);
      }
    }
  }

  TEST_CASE("default names count up and a daemon cannot start children") {
    tandem::test::watchdog guard{30s};
    mp::process a{return_normally};
    mp::process b{return_normally};
    CHECK(a.name().rfind("Process-", 0) == 0);
    CHECK(a.name() != b.name());
    CHECK_FALSE(a.daemon());
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process daemon{with(m, true), start_a_child};
      CHECK(start_and_join(daemon) == 3);
      mp::process normal{with(m), start_a_child};
      CHECK(start_and_join(normal) == 4);
    }
  }

  TEST_CASE("start join and is_alive reject misuse as Python does") {
    tandem::test::watchdog guard{30s};
    mp::process p{sleep_ms, 10'000};
    CHECK_FALSE(p.is_alive());
    CHECK_FALSE(p.pid().has_value());
    CHECK_FALSE(p.exitcode().has_value());
    CHECK_THROWS_AS(p.join(), tandem::usage_error);
    CHECK_THROWS_AS(p.sentinel(), tandem::usage_error);
    CHECK_THROWS_AS(p.terminate(), tandem::usage_error);
    p.start();
    CHECK(p.is_alive());
    CHECK(p.pid().has_value());
    CHECK_FALSE(p.exitcode().has_value());
    CHECK_THROWS_AS(p.start(), tandem::usage_error);
    CHECK_THROWS_AS(p.set_daemon(true), tandem::usage_error);
    CHECK_THROWS_AS(mp::current_process().join(), tandem::usage_error);
    CHECK_THROWS_AS(mp::current_process().start(), tandem::usage_error);
    p.kill();
    CHECK(p.join(20s));
    CHECK_FALSE(p.is_alive());
    mp::process moved = std::move(p);
    CHECK_THROWS_AS(p.join(), tandem::usage_error); // NOLINT(bugprone-use-after-move): the test
    CHECK(moved.exitcode() == -SIGKILL);
  }

  TEST_CASE("join with a timeout returns false while the child sleeps") {
    tandem::test::watchdog guard{30s};
    default_signals dfl;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process p{with(m), sleep_ms, 10'000};
      p.start();
      auto t0 = std::chrono::steady_clock::now();
      CHECK_FALSE(p.join(200ms));
      auto took = std::chrono::steady_clock::now() - t0;
      CHECK(took >= 120ms);
      CHECK(took < 2s);
      CHECK(p.is_alive());
      CHECK_FALSE(p.join(-1s)); // negative: a zero timeout
      p.terminate();
      CHECK(p.join(20s));
      CHECK(p.exitcode() == -SIGTERM);
    }
  }

  TEST_CASE("the sentinel becomes readable when the child exits") {
    tandem::test::watchdog guard{30s};
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process p{with(m), sleep_ms, 10'000};
      p.start();
      int fd = p.sentinel();
      CHECK_FALSE(readable(fd, 100));
      CHECK(p.is_alive());
      p.kill();
      CHECK(readable(fd, 10'000));
      CHECK(p.join(0s));
      CHECK(p.exitcode() == -SIGKILL);
    }
  }

  TEST_CASE("close refuses a running child and every later use") {
    tandem::test::watchdog guard{30s};
    default_signals dfl;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process p{with(m, true), sleep_ms, 10'000};
      p.start();
      CHECK(p.is_alive());
      CHECK_THROWS_AS(p.close(), tandem::value_error); // Python's ValueError
      p.terminate();
      CHECK(p.join(20s));
      CHECK_FALSE(p.is_alive());
      CHECK(p.exitcode() == -SIGTERM);
      p.close();
      CHECK_THROWS_AS(p.is_alive(), tandem::value_error);
      CHECK_THROWS_AS(p.join(), tandem::value_error);
      CHECK_THROWS_AS(p.terminate(), tandem::value_error);
      CHECK_THROWS_AS(p.sentinel(), tandem::value_error);
      CHECK_THROWS_AS(p.exitcode(), tandem::value_error);
      CHECK_THROWS_AS(p.name(), tandem::value_error);
      p.close(); // a second close does nothing
    }
    mp::process never{return_normally};
    never.close();
    CHECK_THROWS_AS(never.start(), tandem::value_error);
  }

  TEST_CASE("one hundred children are started and reaped") {
    tandem::test::watchdog guard{120s};
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      std::vector<mp::process> procs;
      for (int i = 0; i < 100; ++i) procs.emplace_back(with(m), sleep_ms, 10);
      for (auto& p : procs) p.start();
      for (auto& p : procs) {
        REQUIRE(p.join(30s));
        CHECK(p.exitcode() == 0);
      }
      CHECK(mp::active_children().empty());
    }
  }

  TEST_CASE("one hundred children are terminated right after start") {
    tandem::test::watchdog guard{120s};
    default_signals dfl;
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      std::vector<mp::process> procs;
      for (int i = 0; i < 100; ++i) procs.emplace_back(with(m), sleep_ms, 30'000);
      for (auto& p : procs) p.start();
      for (auto& p : procs) p.terminate();
      for (auto& p : procs) {
        REQUIRE(p.join(30s));
        CHECK(p.exitcode() == -SIGTERM);
      }
      CHECK(mp::active_children().empty());
    }
  }

  TEST_CASE("active_children lists alive children and collects finished ones") {
    tandem::test::watchdog guard{30s};
    for (auto m : methods) {
      CAPTURE(mp::to_string(m));
      mp::process sleeper{with(m), sleep_ms, 10'000};
      mp::process quick{with(m), return_normally};
      sleeper.start();
      quick.start();
      auto pid = *quick.pid();
      // The quick one ends by itself; active_children must collect it without a join.
      CHECK(tandem::test::wait_until([&] { return mp::active_children().size() == 1; }, 10s));
      auto alive = mp::active_children();
      REQUIRE(alive.size() == 1);
      CHECK(alive.front() == sleeper);
      CHECK(alive.front().pid() == sleeper.pid());
      CHECK(quick.exitcode() == 0);
      CHECK(::kill(pid, 0) == -1); // reaped: the pid is gone
      sleeper.kill();
      CHECK(sleeper.join(20s));
      CHECK(mp::active_children().empty());
    }
  }

  TEST_CASE("a daemon child dies when its parent is killed") {
    tandem::test::watchdog guard{60s};
    auto [ours, theirs] = mp::pipe();
    mp::process parent{with(mp::start_method::fork), start_daemon_grandchild, std::move(theirs)};
    parent.start();
    REQUIRE(ours.poll(20s));
    auto grandchild = static_cast<pid_t>(ours.recv<int>());
    CHECK(::kill(grandchild, 0) == 0);
    parent.kill();
    REQUIRE(parent.join(20s));
    CHECK(parent.exitcode() == -SIGKILL);
    CHECK(process_ends(grandchild, 10s));
  }

  TEST_CASE("parent_process stops being alive when the parent dies") {
    tandem::test::watchdog guard{60s};
    auto [ours, theirs] = mp::pipe();
    mp::process parent{with(mp::start_method::fork), start_parent_watcher, std::move(theirs)};
    parent.start();
    REQUIRE(ours.poll(20s));
    CHECK(ours.recv<int>() == 1); // the grandchild saw its parent alive
    parent.kill();
    REQUIRE(parent.join(20s));
    REQUIRE(ours.poll(20s));
    CHECK(ours.recv<int>() == 1); // and then saw it end
  }

  TEST_CASE("fork is refused while other threads run unless allowed") {
    tandem::test::watchdog guard{30s}; // a thread of its own: the process has at least two
    mp::process p{{.name = {}, .daemon = {}, .method = mp::start_method::fork}, return_normally};
    try {
      p.start();
      FAIL("fork with threads was not refused");
    } catch (const tandem::usage_error& e) {
      std::string what = e.what();
      CHECK(what.find("threads are running") != std::string::npos);
      CHECK(what.find("MainThread") != std::string::npos);
    }
    CHECK_FALSE(p.pid().has_value());
    mp::process allowed{with(mp::start_method::fork), return_normally};
    CHECK(start_and_join(allowed) == 0);
  }

  TEST_CASE("start methods are listed and the default is fixed once used") {
    auto all = mp::get_all_start_methods();
    REQUIRE(all.size() == 3);
    CHECK(all[0] == mp::start_method::forkserver);
    CHECK(std::count(all.begin(), all.end(), mp::start_method::spawn) == 1);
    CHECK(std::count(all.begin(), all.end(), mp::start_method::fork) == 1);
    CHECK(mp::get_start_method() == mp::start_method::forkserver);
    CHECK_THROWS_AS(mp::set_start_method(mp::start_method::spawn), tandem::usage_error);
    mp::set_start_method(mp::start_method::spawn, true);
    CHECK(mp::get_start_method() == mp::start_method::spawn);
    mp::process p{return_normally};
    CHECK(p.method() == mp::start_method::spawn);
    mp::set_start_method(mp::start_method::forkserver, true);
    CHECK(mp::get_start_method() == mp::start_method::forkserver);
    mp::process q{return_normally};
    CHECK(q.method() == mp::start_method::forkserver);
    CHECK(mp::to_string(mp::start_method::fork) == "fork");
    CHECK(mp::to_string(mp::start_method::spawn) == "spawn");
    CHECK(mp::to_string(mp::start_method::forkserver) == "forkserver");
  }

  TEST_CASE("cpu_count is at least one and within the affinity mask") {
    auto n = mp::cpu_count();
    CHECK(n >= 1);
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(n <= static_cast<std::size_t>(CPU_COUNT(&set)));
  }

  TEST_CASE("runtime shutdown joins non-daemon children and terminates daemon ones") {
    tandem::test::watchdog guard{30s};
    tandem::runtime rt;
    mp::process worker{sleep_ms, 300};
    mp::process daemon{{.name = {}, .daemon = true}, sleep_ms, 60'000};
    worker.start();
    daemon.start();
    auto t0 = std::chrono::steady_clock::now();
    CHECK(rt.shutdown(20s));
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);
    CHECK(worker.exitcode() == 0);
    CHECK(daemon.exitcode() == -SIGTERM);
    CHECK(mp::active_children().empty());
  }

} // TEST_SUITE

TEST_SUITE("process") {

  TEST_CASE("a daemon child started by a thread outlives that thread") {
    tandem::test::watchdog guard{30s};
    default_signals dfl;
    for (auto m : {mp::start_method::spawn, mp::start_method::forkserver}) {
      CAPTURE(mp::to_string(m));
      std::optional<mp::process> child;
      auto ends = mp::pipe();
      auto& ours = ends.first;
      std::thread starter{[&, conn = std::move(ends.second)]() mutable {
        child.emplace(mp::process_options{.name = {}, .daemon = true, .method = m},
                      hello_then_sleep, std::move(conn), 30'000);
        child->start();
        // The thread ends only once the child runs its target.
        ours.recv<int>();
      }};
      starter.join();
      // The thread that asked for the child has ended; the parent-death signal must not fire.
      std::this_thread::sleep_for(300ms); // gives a wrongly delivered signal time to land
      CHECK(child->is_alive());
      child->terminate();
      CHECK(child->join(20s));
      CHECK(child->exitcode() == -SIGTERM);
    }
  }

} // TEST_SUITE

TEST_SUITE("process forkserver") {

  TEST_CASE("one server started by this process forks every child") {
    tandem::test::watchdog guard{60s};
    std::set<int> servers;
    for (int i = 0; i < 20; ++i) {
      auto [ours, theirs] = mp::pipe();
      mp::process p{with(mp::start_method::forkserver), report_ppid, std::move(theirs)};
      p.start();
      REQUIRE(ours.poll(20s));
      servers.insert(ours.recv<int>());
      REQUIRE(p.join(20s));
      CHECK(p.exitcode() == 0);
    }
    REQUIRE(servers.size() == 1);
    auto server = static_cast<pid_t>(*servers.begin());
    CHECK(server != ::getpid());
    CHECK(parent_of(server) == ::getpid()); // the server is this process's child
    CHECK(mp::active_children().empty());   // and not one of its processes
  }

  TEST_CASE("threads start forkserver children at the same time") {
    tandem::test::watchdog guard{60s};
    constexpr std::size_t threads = 4;
    constexpr std::size_t each = 10;
    // Each thread writes only its own slots; the main thread reads them after join().
    std::vector<int> codes(threads * each, 1000);
    std::vector<std::thread> starters;
    for (std::size_t t = 0; t < threads; ++t)
      starters.emplace_back([&, t] {
        std::vector<mp::process> procs;
        for (std::size_t i = 0; i < each; ++i) {
          procs.emplace_back(with(mp::start_method::forkserver), exit_with,
                             static_cast<int>(t * each + i));
          procs.back().start();
        }
        for (std::size_t i = 0; i < each; ++i)
          if (procs[i].join(30s)) codes[t * each + i] = procs[i].exitcode().value_or(1000);
      });
    for (auto& t : starters) t.join();
    for (std::size_t i = 0; i < threads * each; ++i) CHECK(codes[i] == static_cast<int>(i));
  }

  TEST_CASE("a connection passed as an argument reaches the forkserver child") {
    tandem::test::watchdog guard{30s};
    auto [ours, theirs] = mp::pipe();
    mp::process p{with(mp::start_method::forkserver), echo_reversed, std::move(theirs)};
    p.start();
    const std::string text = "forkserver";
    ours.send_bytes(std::as_bytes(std::span{text.data(), text.size()}));
    REQUIRE(ours.poll(20s));
    auto reply = ours.recv_bytes();
    CHECK(std::string(reinterpret_cast<const char*>(reply.data()), reply.size()) == "revreskrof");
    REQUIRE(p.join(20s));
    CHECK(p.exitcode() == 0);
    REQUIRE(ours.poll(20s)); // the child's end is closed: EOF
    CHECK_THROWS_AS(ours.recv_bytes(), tandem::eof_error);
  }

  TEST_CASE("large messages cross to a child through shared memory announced before it started") {
    tandem::test::watchdog guard{60s};
    for (auto method : methods) {
      CAPTURE(mp::to_string(method));
      auto [ours, theirs] = mp::pipe();
      std::vector<std::byte> big(300'000);
      for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i % 253);
      // `theirs` learns the memory of `ours` here; the second message, sent before the child
      // exists, must still be readable by the child that receives `theirs`.
      ours.send_bytes(big);
      REQUIRE(theirs.recv_bytes() == big);
      std::reverse(big.begin(), big.end());
      ours.send_bytes(big);
      mp::process p{with(method), echo_reversed, std::move(theirs)};
      p.start();
      REQUIRE(ours.poll(20s));
      auto reply = ours.recv_bytes();
      std::reverse(big.begin(), big.end());
      CHECK(reply == big);
      REQUIRE(p.join(20s));
      CHECK(p.exitcode() == 0);
    }
  }

  TEST_CASE("a large argument reaches the forkserver child intact") {
    tandem::test::watchdog guard{30s};
    std::string big(300'000, ' ');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    mp::process p{with(mp::start_method::forkserver), check_big, big, big.size()};
    CHECK(start_and_join(p) == 0);
  }

  TEST_CASE("the forkserver dies when the program is killed and so do its daemon children") {
    tandem::test::watchdog guard{60s};
    for (bool daemon : {true, false}) {
      CAPTURE(daemon);
      auto [ours, theirs] = mp::pipe();
      mp::process program{with(mp::start_method::fork), start_forkserver_grandchild,
                          std::move(theirs), daemon};
      program.start();
      REQUIRE(ours.poll(20s));
      auto grandchild = static_cast<pid_t>(ours.recv<int>());
      auto server = static_cast<pid_t>(ours.recv<int>());
      CHECK(server != *program.pid());
      CHECK(parent_of(server) == *program.pid());
      CHECK(parent_of(grandchild) == server);
      program.kill();
      REQUIRE(program.join(20s));
      CHECK(program.exitcode() == -SIGKILL);
      CHECK(process_ends(server, 10s));
      if (daemon) {
        CHECK(process_ends(grandchild, 10s));
      } else {
        // A non-daemon child outlives its parent, as with spawn; this test ends it.
        CHECK_FALSE(process_ends(grandchild, 300ms));
        ::kill(grandchild, SIGKILL);
        CHECK(process_ends(grandchild, 10s));
      }
    }
  }

  TEST_CASE("a killed forkserver loses its children's exit codes and is replaced") {
    tandem::test::watchdog guard{60s};
    default_signals dfl;
    auto [ours, theirs] = mp::pipe();
    mp::process pending{with(mp::start_method::forkserver), report_ppid_then_sleep,
                        std::move(theirs), 30'000};
    pending.start();
    REQUIRE(ours.poll(20s));
    auto server = static_cast<pid_t>(ours.recv<int>());
    REQUIRE(parent_of(server) == ::getpid());
    REQUIRE(::kill(server, SIGKILL) == 0);
    REQUIRE(process_ends(server, 10s));

    // The child outlives the server (it is no daemon); it can still be signalled and joined,
    // but its exit code is gone.
    CHECK(pending.is_alive());
    pending.kill();
    REQUIRE(pending.join(20s));
    CHECK_FALSE(pending.is_alive());
    try {
      (void)pending.exitcode();
      FAIL("the exit code of a child whose forkserver died was reported");
    } catch (const tandem::process_error& e) {
      CHECK(std::string{e.what()}.find("forkserver") != std::string::npos);
    }
    CHECK(mp::active_children().empty());

    // The next start starts a new server.
    auto [ours2, theirs2] = mp::pipe();
    mp::process next{with(mp::start_method::forkserver), report_ppid, std::move(theirs2)};
    next.start();
    REQUIRE(ours2.poll(20s));
    auto new_server = static_cast<pid_t>(ours2.recv<int>());
    CHECK(new_server != server);
    CHECK(parent_of(new_server) == ::getpid());
    REQUIRE(next.join(20s));
    CHECK(next.exitcode() == 0);
  }

} // TEST_SUITE

TEST_CASE("daemon(bool) sets the flag as set_daemon does, before start only") {
  tandem::mp::process p{[] {}};
  CHECK_FALSE(p.daemon());
  p.daemon(true);
  CHECK(p.daemon());
  p.set_daemon(false);
  CHECK_FALSE(p.daemon());
}

TEST_CASE("join with a stop token returns false promptly on a stop and the child keeps running") {
  tandem::test::watchdog guard{30s};
  default_signals dfl;
  mp::process p{with(mp::start_method::fork, true), sleep_ms, 10'000};
  p.start();
  std::stop_source source;
  std::thread stopper{[&] {
    std::this_thread::sleep_for(100ms);
    source.request_stop();
  }};
  auto started = std::chrono::steady_clock::now();
  CHECK_FALSE(p.join(source.get_token()));
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  stopper.join();
  CHECK(p.is_alive());
  CHECK_FALSE(p.join(source.get_token(), 0s)); // already stopped: no wait at all
  p.kill();
  std::stop_source never;
  CHECK(p.join(never.get_token(), 20s));
  CHECK(p.exitcode() == -SIGKILL);
}
