// Handles of primitives in the default arena: shared with fork() children, and passed to
// re-executed children (a new program image) through process_arg, as mp::process's spawn method
// does: the child maps the arena from the descriptor it receives and uses the same object.
#include "mp_sync/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/barrier.hpp>
#include <tandem/mp/bounded_semaphore.hpp>
#include <tandem/mp/condition.hpp>
#include <tandem/mp/event.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/rlock.hpp>
#include <tandem/mp/semaphore.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

using namespace tandem::test::mp_sync;
namespace detail = tandem::mp::detail;

extern char** environ;

namespace {

constexpr const char* child_flag = "--mp-sync-arena-child";

std::string to_hex(const std::vector<std::byte>& bytes) {
  std::string out;
  char buf[3];
  for (auto b : bytes) {
    std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(b));
    out += buf;
  }
  return out;
}

std::vector<std::byte> from_hex(const char* s) {
  std::vector<std::byte> out;
  for (std::size_t i = 0; s[i] != '\0' && s[i + 1] != '\0'; i += 2) {
    char buf[3] = {s[i], s[i + 1], '\0'};
    out.push_back(static_cast<std::byte>(std::strtoul(buf, nullptr, 16)));
  }
  return out;
}

// One argument as a spawn child receives it: its bytes (hex) and its descriptor's number.
struct passed_arg {
  std::string hex;
  int fd;
};

// Saves `h` as mp::process's spawn method does, with a descriptor the child inherits.
template <class T>
passed_arg pass(const detail::arena_handle<T>& h) {
  std::vector<std::byte> bytes;
  std::vector<int> fds;
  detail::arg_writer w{bytes, fds};
  detail::process_arg<detail::arena_handle<T>>::save(w, h);
  REQUIRE(fds.size() == 1);
  int inheritable = ::dup(fds[0]); // dup clears close-on-exec
  REQUIRE(inheritable >= 0);
  return {to_hex(bytes), inheritable};
}

template <class T>
detail::arena_handle<T> receive(const char* hex, const char* fd_text) {
  auto bytes = from_hex(hex);
  int fd = std::atoi(fd_text);
  detail::arg_reader r{bytes, std::span<const int>{&fd, 1}};
  return detail::process_arg<detail::arena_handle<T>>::load(r);
}

// Re-executes this test binary as a child running `scenario` with `args`; returns its pid.
pid_t exec_child(const char* scenario, const std::vector<passed_arg>& args) {
  std::vector<std::string> strings{"/proc/self/exe", child_flag, scenario};
  for (auto& a : args) {
    strings.push_back(a.hex);
    strings.push_back(std::to_string(a.fd));
  }
  std::vector<char*> argv;
  for (auto& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ);
  REQUIRE(rc == 0);
  for (auto& a : args) ::close(a.fd);
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// -- the children's side ------------------------------------------------------------------------

// "lock": (lock, event): say hello through the event, then wait for the lock the parent holds.
int lock_child(char** argv) {
  auto l = receive<tandem::mp::lock>(argv[0], argv[1]);
  auto started = receive<tandem::mp::event>(argv[2], argv[3]);
  if (l->acquire(0s)) return 10; // the parent holds it
  started->set();
  if (!l->acquire(10s)) return 11;
  l->release();
  return 0;
}

// "semaphore": (semaphore): release 3 units into it.
int semaphore_child(char** argv) {
  auto s = receive<tandem::mp::semaphore>(argv[0], argv[1]);
  s->release(3);
  return 0;
}

// "barrier": (barrier without action, condition): meet the parent, then notify it.
int barrier_child(char** argv) {
  auto b = receive<tandem::mp::barrier>(argv[0], argv[1]);
  auto c = receive<tandem::mp::condition>(argv[2], argv[3]);
  if (b->wait(10s) > 1) return 12;
  c->acquire();
  c->notify();
  c->release();
  return 0;
}

// "wrong type": a lock received as an event must be refused.
int wrong_type_child(char** argv) {
  try {
    receive<tandem::mp::event>(argv[0], argv[1]);
  } catch (const tandem::bad_message_error&) {
    return 0;
  }
  return 13;
}

} // namespace

// The bootstrap of this test binary: a re-executed arena child runs its scenario here, and an
// mp::process child (spawn, forkserver) turns into its target in freeze_support().
extern "C" void tandem_test_bootstrap(int argc, char** argv) {
  if (argc < 3 || std::strcmp(argv[1], child_flag) != 0) {
    tandem::mp::freeze_support();
    return;
  }
  std::string scenario = argv[2];
  int code = 99;
  try {
    if (scenario == "lock") code = lock_child(argv + 3);
    if (scenario == "semaphore") code = semaphore_child(argv + 3);
    if (scenario == "barrier") code = barrier_child(argv + 3);
    if (scenario == "wrong type") code = wrong_type_child(argv + 3);
  } catch (...) {
    code = 98;
  }
  std::exit(code);
}

TEST_SUITE("mp sync arena") {

  TEST_CASE("a lock handle passed to a re-executed child refers to the same lock") {
    tandem::test::watchdog guard{20s};
    auto sut = tandem::mp::lock::create();
    auto started = tandem::mp::event::create();
    sut->acquire();

    auto pid = exec_child("lock", {pass(sut), pass(started)});
    CHECK(started->wait(10s));
    std::this_thread::sleep_for(50ms); // the child blocks in acquire: part of the scenario
    sut->release();

    CHECK(wait_exit(pid) == 0);
    CHECK(sut->acquire(0s));
    sut->release();
  }

  TEST_CASE("a semaphore released by a re-executed child has the units here") {
    tandem::test::watchdog guard{20s};
    auto sut = tandem::mp::semaphore::create(0);
    auto pid = exec_child("semaphore", {pass(sut)});
    CHECK(wait_exit(pid) == 0);
    for (int i = 0; i < 3; ++i) CHECK(sut->acquire(0s));
    CHECK_FALSE(sut->acquire(0s));
  }

  TEST_CASE("a barrier and a condition shared with a re-executed child work across images") {
    tandem::test::watchdog guard{20s};
    auto b = tandem::mp::barrier::create(2);
    auto c = tandem::mp::condition::create();
    auto pid = exec_child("barrier", {pass(b), pass(c)});
    // Holding the condition's lock across the barrier: the child can only notify once this process
    // waits.
    c->acquire();
    CHECK(b->wait(10s) <= 1);
    bool notified = c->wait(10s);
    c->release();
    CHECK(notified);
    CHECK(wait_exit(pid) == 0);
  }

  TEST_CASE("a handle received as another type is refused") {
    tandem::test::watchdog guard{20s};
    auto sut = tandem::mp::lock::create();
    auto pid = exec_child("wrong type", {pass(sut)});
    CHECK(wait_exit(pid) == 0);
  }

  TEST_CASE("handles share one object with fork children and the last reference destroys it") {
    tandem::test::watchdog guard{20s};
    auto sut = tandem::mp::semaphore::create(0);
    auto copy = sut;
    CHECK(copy.get() == sut.get());
    {
      child c{[&] {
        auto in_child = sut; // a reference of the child's own, dropped at the end of the scope
        in_child->release(2);
      }};
      CHECK(c.join());
    }
    CHECK(sut->acquire(0s));
    CHECK(copy->acquire(0s));
    sut.reset();
    CHECK_FALSE(sut);
    CHECK_FALSE(copy->acquire(0s)); // still alive through `copy`
    copy.reset();

    // The freed block is used again for the next object of that size.
    auto again = tandem::mp::semaphore::create(5);
    CHECK(again->get_value() == 5);
  }

  TEST_CASE("every primitive can be created in the default arena") {
    tandem::test::watchdog guard{20s};
    auto l = tandem::mp::lock::create();
    auto r = tandem::mp::rlock::create();
    auto c = tandem::mp::condition::create();
    auto e = tandem::mp::event::create();
    auto s =
        tandem::mp::semaphore::create(2, tandem::mp::semaphore_options{.return_on_death = true});
    auto bs = tandem::mp::bounded_semaphore::create(1);
    auto b = tandem::mp::barrier::create(1);

    CHECK(l->acquire(0s));
    CHECK(r->acquire(0s));
    CHECK(c->acquire(0s));
    e->set();
    CHECK(e->is_set());
    CHECK(s->acquire(0s));
    CHECK(bs->acquire(0s));
    CHECK(b->wait() == 0);
    CHECK_THROWS_AS(tandem::mp::semaphore::create(-1), tandem::value_error);
    CHECK_THROWS_AS(tandem::mp::barrier::create(0), tandem::value_error);
  }

} // TEST_SUITE
