// Regression tests for the robustness of the mp synchronization primitives: liveness checks that
// cannot read /proc never count as death, dead holders are found when futex_waitv is forbidden,
// processes killed in the middle of internal updates (through detail::fault_hook) are repaired,
// pid reuse does not pass for ownership, and the return_on_death table does not fill up with
// processes that are gone.
#include "mp_sync/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/barrier.hpp>
#include <tandem/mp/condition.hpp>
#include <tandem/mp/detail/robust_arena.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/rlock.hpp>
#include <tandem/mp/semaphore.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <memory>
#include <stop_token>
#include <thread>
#include <vector>

using namespace tandem::test::mp_sync;

namespace {

namespace detail = tandem::mp::detail;

// Leaves the calling process no descriptor to open: every open() fails with EMFILE.
void exhaust_descriptors() {
  rlimit none{0, 0};
  ::getrlimit(RLIMIT_NOFILE, &none);
  none.rlim_cur = 0;
  ::setrlimit(RLIMIT_NOFILE, &none);
}

// Makes futex_waitv fail with EPERM in the calling process (as a container's seccomp profile
// may), so that stop-token waits take the polling fallback. False when the filter cannot be set.
bool forbid_futex_waitv() {
#ifdef SYS_futex_waitv
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex_waitv, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
#else
  return true; // no futex_waitv at all: the fallback is taken anyway
#endif
}

// Where fault_hook reports that the process reached its fault point.
std::atomic<int>* reached = nullptr;

void stop_at_fault_point(detail::fault_point) {
  reached->store(1);
  hang();
}

// Runs `fn` in a grandchild that is process 1 of a new pid namespace; returns the grandchild's
// exit code, or 77 when no pid namespace can be made (no privilege).
int run_as_pid_one(const std::function<void()>& fn) {
  auto code = make_cell<int>(-1);
  {
    child c{[&] {
      if (::unshare(CLONE_NEWPID) != 0) ::_exit(77);
      pid_t g = ::fork();
      if (g < 0) ::_exit(78);
      if (g == 0) {
        int rc = 0;
        try {
          fn();
        } catch (...) {
          rc = 70;
        }
        ::_exit(rc);
      }
      int status = 0;
      while (::waitpid(g, &status, 0) < 0) {
      }
      ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 79);
    }};
    int status = c.reap();
    code->store(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  return code->load();
}

} // namespace

TEST_SUITE("mp sync review fixes") {

  TEST_CASE("a blocked acquirer that cannot open files never takes a lock from a live holder") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto outcome = make_cell<int>(-1);
    REQUIRE(sut->acquire(0s));
    {
      child c{[&] {
        exhaust_descriptors();
        try {
          outcome->store(sut->acquire(400ms) ? 1 : 0);
        } catch (const tandem::owner_died_error&) {
          outcome->store(2);
        }
      }};
      CHECK(c.join());
    }
    CHECK(outcome->load() == 0); // timed out: the holder (this process) is alive
    CHECK(sut->locked());
    sut->release();
  }

  TEST_CASE("a holder that cannot read its own start time is not taken for dead") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto holding = make_cell<int>(0);
    child h{[&] {
      exhaust_descriptors();
      sut->acquire();
      holding->store(1);
      hang();
    }};
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    int outcome = -1;
    try {
      outcome = sut->acquire(300ms) ? 1 : 0;
    } catch (const tandem::owner_died_error&) {
      outcome = 2; // taken from a live holder
      sut->make_consistent();
    }
    CHECK(outcome == 0);
    if (outcome != 0) {
      sut->release();
      return;
    }

    // Its pid-only tag still lets it be found dead once it is.
    h.kill();
    auto start = clock_type::now();
    CHECK_THROWS_AS(sut->acquire(), tandem::owner_died_error);
    CHECK(clock_type::now() - start < 1s);
    sut->make_consistent();
    sut->release();
    h.reap();
  }

  TEST_CASE("a stop token acquirer finds a dead holder when futex_waitv is forbidden") {
    tandem::test::watchdog guard{30s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto holding = make_cell<int>(0);
    auto ready = make_cell<int>(0);
    auto outcome = make_cell<int>(-1);
    auto done_ns = make_cell<long long>(0);
    child h{[&] {
      sut->acquire();
      holding->store(1);
      hang();
    }};
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    child waiter{[&] {
      if (!forbid_futex_waitv()) ::_exit(3);
      std::stop_source source;
      ready->store(1);
      try {
        outcome->store(sut->acquire(source.get_token(), 5s) ? 1 : 0);
      } catch (const tandem::owner_died_error&) {
        outcome->store(2);
      }
      done_ns->store(now_ns());
    }};
    REQUIRE(tandem::test::wait_until([&] { return ready->load() == 1; }));
    std::this_thread::sleep_for(150ms); // the waiter sleeps in the fallback by now
    auto killed_ns = now_ns();
    h.kill();
    CHECK(waiter.join());
    CHECK(outcome->load() == 2);
    CHECK(done_ns->load() - killed_ns < 1'500'000'000LL);
    h.reap();
  }

  TEST_CASE("a stop token acquirer of a tracked semaphore gets a dead holder's unit when "
            "futex_waitv is forbidden") {
    tandem::test::watchdog guard{30s};
    auto sut = make_shared_object<tandem::mp::semaphore>(1, tandem::mp::semaphore_options{true});
    auto holding = make_cell<int>(0);
    auto ready = make_cell<int>(0);
    auto outcome = make_cell<int>(-1);
    auto done_ns = make_cell<long long>(0);
    child h{[&] {
      sut->acquire();
      holding->store(1);
      hang();
    }};
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    child waiter{[&] {
      if (!forbid_futex_waitv()) ::_exit(3);
      std::stop_source source;
      ready->store(1);
      outcome->store(sut->acquire(source.get_token(), 5s) ? 1 : 0);
      done_ns->store(now_ns());
    }};
    REQUIRE(tandem::test::wait_until([&] { return ready->load() == 1; }));
    std::this_thread::sleep_for(150ms);
    auto killed_ns = now_ns();
    h.kill();
    CHECK(waiter.join());
    CHECK(outcome->load() == 1);
    CHECK(done_ns->load() - killed_ns < 1'500'000'000LL);
    h.reap();
  }

  TEST_CASE(
      "a stop token waiter at a barrier learns of a dead party when futex_waitv is forbidden") {
    tandem::test::watchdog guard{30s};
    auto sut = make_shared_object<tandem::mp::barrier>(3);
    auto ready = make_cell<int>(0);
    auto outcome = make_cell<int>(-1);
    auto done_ns = make_cell<long long>(0);
    child party{[&] {
      sut->wait();
      hang();
    }};
    child waiter{[&] {
      if (!forbid_futex_waitv()) ::_exit(3);
      std::stop_source source;
      ready->store(1);
      try {
        outcome->store(sut->wait(source.get_token(), 5s) ? 1 : 0);
      } catch (const tandem::broken_barrier_error&) {
        outcome->store(2);
      }
      done_ns->store(now_ns());
    }};
    REQUIRE(tandem::test::wait_until([&] { return ready->load() == 1; }));
    std::this_thread::sleep_for(200ms); // both are inside wait() by now
    auto killed_ns = now_ns();
    party.kill();
    CHECK(waiter.join());
    CHECK(outcome->load() == 2);
    CHECK(done_ns->load() - killed_ns < 1'500'000'000LL);
    party.reap();
  }

  TEST_CASE("a process killed in the middle of a tracked take does not block later acquirers") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::semaphore>(1, tandem::mp::semaphore_options{true});
    auto stopped = make_cell<int>(0);
    child h{[&] {
      reached = stopped.get();
      detail::fault_hook.store(&stop_at_fault_point);
      sut->acquire();
      ::_exit(5); // not reached: the hook hangs
    }};
    REQUIRE(tandem::test::wait_until([&] { return stopped->load() == 1; }));
    CHECK(sut->get_value() == 0); // the count is lowered, the holding not yet recorded
    h.kill();
    auto start = clock_type::now();
    CHECK(sut->acquire(3s));
    CHECK(clock_type::now() - start < 1500ms);
    CHECK(sut->get_value() == 0);
    sut->release();
    CHECK(sut->get_value() == 1);
    h.reap();
  }

  TEST_CASE("an rlock owned by a dead process is not re-entered by a process that reuses its pid") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::rlock>();
    auto outcome = make_cell<int>(-1);
    int first = run_as_pid_one([&] {
      if (::getpid() != 1) ::_exit(4);
      sut->acquire();
      ::_exit(0); // dies owning it
    });
    if (first == 77) {
      MESSAGE("no pid namespace can be made here: pid reuse is not exercised");
      return;
    }
    REQUIRE(first == 0);
    // Start times are counted in clock ticks: the second process must start in a later one.
    std::this_thread::sleep_for(50ms);
    int second = run_as_pid_one([&] {
      if (::getpid() != 1) ::_exit(4);
      try {
        outcome->store(sut->acquire(0s) ? 1 : 0);
      } catch (const tandem::owner_died_error&) {
        outcome->store(sut->recursion_count() == 1 ? 2 : 3);
      }
    });
    CHECK(second == 0);
    CHECK(outcome->load() == 2); // taken over, not re-entered
  }

  TEST_CASE("released entries of a tracked semaphore are free for later processes") {
    tandem::test::watchdog guard{30s};
    auto sut = make_shared_object<tandem::mp::semaphore>(1, tandem::mp::semaphore_options{true});
    for (std::size_t i = 0; i < tandem::mp::semaphore::max_tracked_processes + 2; ++i) {
      child user{[&] {
        sut->acquire();
        sut->release();
      }};
      REQUIRE(user.join());
    }
    auto holding = make_cell<int>(0);
    child h{[&] {
      sut->acquire();
      holding->store(1);
      hang();
    }};
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    h.kill();
    CHECK(sut->acquire(3s)); // its unit was tracked, so it comes back
    sut->release();
    h.reap();
  }

  TEST_CASE("a process that finds the tracking table full frees the entries of dead processes") {
    tandem::test::watchdog guard{30s};
    constexpr std::size_t table = tandem::mp::semaphore::max_tracked_processes;
    constexpr std::size_t units = table + 8;
    auto sut =
        make_shared_object<tandem::mp::semaphore>(units, tandem::mp::semaphore_options{true});
    auto holding = make_cell<int>(0);
    {
      std::vector<std::unique_ptr<child>> holders;
      for (std::size_t i = 0; i < table; ++i)
        holders.push_back(std::make_unique<child>([&] {
          sut->acquire();
          holding->fetch_add(1);
          hang();
        }));
      REQUIRE(tandem::test::wait_until([&] { return holding->load() == static_cast<int>(table); }));
      for (auto& c : holders) c->kill();
      for (auto& c : holders) c->reap();
    }
    holding->store(0);
    child last{[&] {
      sut->acquire(); // the table is full of dead processes
      holding->store(1);
      hang();
    }};
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    last.kill();
    std::size_t taken = 0;
    while (taken < units && sut->acquire(2s)) ++taken;
    CHECK(taken == units); // every unit came back, the last process's too
    sut->release(taken);
    last.reap();
  }

  TEST_CASE("a waiter chosen by a notifier killed before waking it still wakes") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::condition>();
    auto stopped = make_cell<int>(0);
    REQUIRE(sut->acquire(0s));
    child notifier{[&] {
      reached = stopped.get();
      detail::fault_hook.store(&stop_at_fault_point);
      sut->acquire(); // free once the parent waits
      sut->notify();
      ::_exit(5); // not reached: the hook hangs
    }};
    std::thread killer{[&] {
      if (tandem::test::wait_until([&] { return stopped->load() == 1; })) notifier.kill();
    }};
    auto start = clock_type::now();
    // Chosen, then the lock comes back from the dead notifier.
    CHECK_THROWS_AS(sut->wait(6s), tandem::owner_died_error);
    CHECK(clock_type::now() - start < 3s);
    killer.join();
    sut->make_consistent();
    sut->release();
    notifier.reap();
  }

  TEST_CASE("a fork while another thread uses the arena registry leaves the child able to use it") {
    tandem::test::watchdog guard{60s};
    auto& arena = detail::arena::default_arena();
    std::atomic<bool> stop{false};
    // Takes and releases the registry's mutex over and over (attach() of a known arena).
    std::thread busy{[&] {
      while (!stop.load()) {
        int fd = ::fcntl(arena.fd(), F_DUPFD_CLOEXEC, 0);
        if (fd >= 0) detail::arena::attach(fd);
      }
    }};
    int stuck = 0;
    for (int i = 0; i < 40 && stuck == 0; ++i) {
      child c{[] {
        auto lock = tandem::mp::lock::create(); // needs the registry's mutex
        (void)lock;
      }};
      if (!tandem::test::wait_until(
              [&] {
                siginfo_t info{};
                info.si_pid = 0;
                return ::waitid(P_PID, static_cast<id_t>(c.pid()), &info,
                                WEXITED | WNOHANG | WNOWAIT) == 0 &&
                       info.si_pid == c.pid();
              },
              3s))
        ++stuck;
    }
    stop.store(true);
    busy.join();
    CHECK(stuck == 0);
  }
}
