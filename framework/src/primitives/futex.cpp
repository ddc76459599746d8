// The only file that converts tandem::timeout to the kernel's clocks (see detail/futex.hpp).

#include <tandem/detail/futex.hpp>

#include <cerrno>
#include <chrono>
#include <climits>
#include <ctime>
#include <stop_token>
#include <vector>

#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace tandem::detail {

namespace {

static_assert(std::is_same_v<std::chrono::steady_clock::duration, std::chrono::nanoseconds>);
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

// steady_clock is CLOCK_MONOTONIC on Linux, so a deadline converts without reading any clock.
timespec to_timespec(timeout::time_point tp) noexcept {
  auto ns = tp.time_since_epoch().count();
  if (ns < 0) ns = 0;
  return timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

std::uint32_t* addr(const std::atomic<std::uint32_t>& word) noexcept {
  // The kernel only reads the word for a wait; const_cast keeps the public signature honest.
  return reinterpret_cast<std::uint32_t*>(const_cast<std::atomic<std::uint32_t>*>(&word));
}

long sys_futex(std::uint32_t* uaddr, int op, std::uint32_t val, const timespec* ts,
               std::uint32_t val3) noexcept {
  return syscall(SYS_futex, uaddr, op, val, ts, nullptr, val3);
}

// True when the deadline has passed.
bool deadline_passed(const timeout& t) noexcept {
  return t.expired();
}

std::atomic<bool> waitv_unsupported{false};

} // namespace

bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected, const timeout& t,
                bool shared) noexcept {
  if (word.load(std::memory_order_relaxed) != expected) return true;
  int op = FUTEX_WAIT_BITSET | (shared ? 0 : FUTEX_PRIVATE_FLAG);
  if (t.is_forever()) {
    sys_futex(addr(word), op, expected, nullptr, FUTEX_BITSET_MATCH_ANY);
    return true;
  }
  if (deadline_passed(t)) return false;
  auto ts = to_timespec(t.deadline());
  auto rc = sys_futex(addr(word), op, expected, &ts, FUTEX_BITSET_MATCH_ANY);
  if (rc == -1 && errno == ETIMEDOUT) return false;
  return true;
}

bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected, const timeout& t,
                const std::stop_token& st, bool shared) noexcept {
  if (!st.stop_possible()) return futex_wait(word, expected, t, shared);
  if (st.stop_requested()) return true;
  std::atomic<std::uint32_t> stopped{0};
  // Waking `word` too serves the fallback below; its other waiters re-check and sleep again.
  std::stop_callback wake_on_stop{st, [&stopped, &word, shared]() noexcept {
                                    stopped.store(1, std::memory_order_release);
                                    futex_wake(stopped, 1);
                                    futex_wake_all(word, shared);
                                  }};
  if (stopped.load(std::memory_order_acquire) != 0) return true;
#ifdef SYS_futex_waitv
  if (!waitv_unsupported.load(std::memory_order_relaxed)) {
    futex_waitv waiters[2] = {};
    waiters[0].val = expected;
    waiters[0].uaddr = reinterpret_cast<std::uintptr_t>(addr(word));
    waiters[0].flags = FUTEX_32 | (shared ? 0 : FUTEX_PRIVATE_FLAG);
    waiters[1].val = 0;
    waiters[1].uaddr = reinterpret_cast<std::uintptr_t>(addr(stopped));
    waiters[1].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
    timespec ts{};
    const timespec* tsp = nullptr;
    if (!t.is_forever()) {
      if (deadline_passed(t)) return false;
      ts = to_timespec(t.deadline());
      tsp = &ts;
    }
    auto rc = syscall(SYS_futex_waitv, waiters, 2u, 0u, tsp, CLOCK_MONOTONIC);
    if (rc >= 0) return true;
    if (errno == ETIMEDOUT) return false;
    // EAGAIN: a word no longer held its expected value; EINTR: a signal. Any other error (ENOSYS
    // on kernels before 5.16, EPERM or another errno from a seccomp filter) means the call is not
    // usable here: fall back for good.
    if (errno == EAGAIN || errno == EINTR) return true;
    waitv_unsupported.store(true, std::memory_order_relaxed);
  }
#endif
  // Without futex_waitv: the stop callback wakes the word, and slices of 20 ms bound the window
  // in which a stop request can land between the caller's check and the sleep. A slice that ends
  // before `t` returns true (as a spurious wake-up would): callers that must act at intervals
  // track the time themselves.
  auto slice_end = timeout::clock::now() + std::chrono::milliseconds(20);
  timeout slice = t.is_forever() || t.deadline() > slice_end ? timeout{slice_end} : t;
  if (!futex_wait(word, expected, slice, shared)) return !deadline_passed(t);
  return true;
}

int futex_wake(const std::atomic<std::uint32_t>& word, int count, bool shared) noexcept {
  int op = FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG);
  auto rc = sys_futex(addr(word), op, static_cast<std::uint32_t>(count), nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

timespec monotonic_deadline(const timeout& t) noexcept {
  return to_timespec(t.deadline());
}

int ppoll_until(pollfd* fds, nfds_t n, const timeout& t) noexcept {
  for (;;) {
    timespec ts{};
    const timespec* tsp = nullptr;
    if (!t.is_forever()) {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(t.remaining()).count();
      if (left < 0) left = 0;
      ts = timespec{static_cast<time_t>(left / 1'000'000'000),
                    static_cast<long>(left % 1'000'000'000)};
      tsp = &ts;
    }
    int rc = ::ppoll(fds, n, tsp, nullptr);
    if (rc >= 0 || errno != EINTR) return rc;
  }
}

namespace {

// Wakes a ppoll that watches `fd` (an eventfd).
struct eventfd_waker {
  int fd;
  void operator()() const noexcept {
    std::uint64_t one = 1;
    [[maybe_unused]] auto rc = ::write(fd, &one, sizeof one);
  }
};

} // namespace

int ppoll_until(pollfd* fds, nfds_t n, const timeout& t, const std::stop_token& st) noexcept {
  if (!st.stop_possible()) return ppoll_until(fds, n, t);
  if (st.stop_requested()) return 0;
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return -1;
  std::vector<pollfd> all;
  int rc = -1;
  int err = 0;
  try {
    all.assign(fds, fds + n);
  } catch (...) {
    ::close(efd);
    errno = ENOMEM;
    return -1;
  }
  all.push_back({efd, POLLIN, 0});
  {
    std::stop_callback<eventfd_waker> on_stop{st, eventfd_waker{efd}};
    rc = ppoll_until(all.data(), all.size(), t);
    err = errno;
  }
  ::close(efd);
  if (rc < 0) {
    errno = err;
    return -1;
  }
  if (all.back().revents != 0 || st.stop_requested()) return 0;
  for (nfds_t i = 0; i < n; ++i) fds[i].revents = all[i].revents;
  return rc;
}

} // namespace tandem::detail
