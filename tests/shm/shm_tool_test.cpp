// `tandem shm ls` and `tandem shm rm --stale`, run as a separate program against segments this
// run made: a dead owner's, a live owner's, and files in /dev/shm that are not tandem's.
#include "shm/shm_support.hpp"
#include "support/watchdog.hpp"

#include <tandem/mp/detail/shm_named.hpp>
#include <tandem/mp/shared_memory.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef TANDEM_TOOL_PATH

using namespace std::chrono_literals;
using tandem::mp::shared_memory;
namespace shm = tandem::test::shm;
namespace d = tandem::mp::detail;

namespace {

struct tool_result {
  int status = -1; // exit status, or -1 when it did not end within the limit
  std::string out;
};

// Runs the tool with `args`, collecting its standard output and error.
tool_result run_tool(const std::vector<std::string>& args) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  std::vector<std::string> argv_s{TANDEM_TOOL_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  tool_result r;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    r.out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  r.status = shm::wait_child(pid, 5s);
  return r;
}

// Makes a segment whose owner was killed before anything could remove it (created untracked).
std::string dead_owners_segment(std::string_view what) {
  std::string name = shm::unique_name(what);
  shm::report_pipe report;
  pid_t owner = shm::fork_child([&]() -> int {
    report.child_side();
    auto seg = shared_memory::create(name, 3000, {.track = false});
    report.send("ready");
    for (;;) ::pause();
  });
  report.parent_side();
  REQUIRE(report.receive() == "ready");
  shm::kill_child(owner);
  return name;
}

// A file in /dev/shm that is not a tandem segment.
void make_foreign(const std::string& name, std::size_t size, char fill) {
  int fd = ::open(("/dev/shm/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  std::string bytes(size, fill);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

} // namespace

TEST_SUITE("tandem shm") {

  TEST_CASE("tandem shm rm --stale removes a killed owner's segment and nothing else") {
    tandem::test::watchdog guard{30s};
    std::string dead = dead_owners_segment("dead");
    CHECK(shm::exists(dead));
    auto live = shared_memory::create(shm::unique_name("live"), 64);
    shm::scoped_name foreign_big{"foreign_big"};
    shm::scoped_name foreign_small{"foreign_small"};
    make_foreign(foreign_big.name, 8192, 'x');
    make_foreign(foreign_small.name, 10, 'y');

    auto ls = run_tool({"shm", "ls", "--prefix", shm::run_prefix()});
    CHECK(ls.status == 0);
    CHECK(ls.out.find(dead) != std::string::npos);
    CHECK(ls.out.find(live.name()) != std::string::npos);
    CHECK(ls.out.find(foreign_big.name) == std::string::npos);
    CHECK(ls.out.find("dead") != std::string::npos);
    CHECK(ls.out.find("alive") != std::string::npos);
    CHECK(ls.out.find(std::to_string(::getpid())) != std::string::npos);

    auto dry = run_tool({"shm", "rm", "--stale", "--dry-run", "--prefix", shm::run_prefix()});
    CHECK(dry.status == 0);
    CHECK(dry.out.find("would remove " + dead) != std::string::npos);
    CHECK(shm::exists(dead));

    auto rm = run_tool({"shm", "rm", "--stale", "--prefix", shm::run_prefix()});
    CHECK(rm.status == 0);
    CHECK(rm.out.find("removed " + dead) != std::string::npos);
    CHECK_FALSE(shm::exists(dead));
    CHECK(shm::exists(live.name()));
    CHECK(shm::exists(foreign_big.name));
    CHECK(shm::exists(foreign_small.name));
    live.unlink();
    shm::remove(dead);
  }

  TEST_CASE("tandem shm rm --stale removes a segment whose creator died before finishing it") {
    tandem::test::watchdog guard{30s};
    std::string name = dead_owners_segment("unfinished");
    // Turn it into one whose creator died between writing the header and setting it ready.
    int fd = ::open(("/dev/shm/" + name).c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    std::uint32_t zero = 0;
    REQUIRE(::pwrite(fd, &zero, sizeof zero, 12 /* after magic and version */) == 4);
    ::close(fd);
    auto ls = run_tool({"shm", "ls", "--prefix", shm::run_prefix()});
    CHECK(ls.out.find("dead,unfinished") != std::string::npos);
    auto rm = run_tool({"shm", "rm", "--stale", "--prefix", shm::run_prefix()});
    CHECK(rm.status == 0);
    CHECK_FALSE(shm::exists(name));
    shm::remove(name);
  }

  TEST_CASE("tandem refuses misuse with exit status 2 and says what to do") {
    tandem::test::watchdog guard{30s};
    auto no_stale = run_tool({"shm", "rm"});
    CHECK(no_stale.status == 2);
    CHECK(no_stale.out.find("--stale") != std::string::npos);
    auto unknown = run_tool({"frobnicate"});
    CHECK(unknown.status == 2);
    CHECK(unknown.out.find("unknown command") != std::string::npos);
    auto bad_option = run_tool({"shm", "ls", "--stale"});
    CHECK(bad_option.status == 2);
    auto help = run_tool({"--help"});
    CHECK(help.status == 0);
    CHECK(help.out.find("shm rm --stale") != std::string::npos);
  }

} // TEST_SUITE

#endif // TANDEM_TOOL_PATH
