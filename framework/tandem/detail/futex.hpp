// Waiting and waking on a 32-bit word: the one place where tandem's primitives meet the kernel.
//
// Every blocking primitive in tandem (in-process and, with `shared`, in shared memory) parks its
// threads here. All conversions between tandem::timeout and the kernel's timespec live in
// futex.cpp: waits are absolute deadlines on CLOCK_MONOTONIC (FUTEX_WAIT_BITSET), so a wait that
// is interrupted and retried never extends its deadline and never follows the wall clock.
#pragma once

#include <tandem/timeout.hpp>

#include <poll.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <stop_token>

namespace tandem::detail {

/// Blocks while `word` holds `expected`, until a futex_wake on `word`, the deadline of `t`, or a
/// signal. Returns false only when the deadline has passed; true otherwise, including spurious
/// returns: callers loop and re-check their state. `shared` selects a futex that works across
/// processes (the word lives in shared memory); otherwise the cheaper process-private one.
bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected, const timeout& t,
                bool shared = false) noexcept;

/// As above, and also returns (true) promptly once `st` is stopped, however the stop request races
/// with going to sleep: the wait covers both the word and a private stop flag (futex_waitv), and
/// falls back to short slices on kernels older than 5.16.
bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected, const timeout& t,
                const std::stop_token& st, bool shared = false) noexcept;

/// Wakes up to `count` threads blocked on `word` (INT_MAX for all). Returns how many woke.
int futex_wake(const std::atomic<std::uint32_t>& word, int count, bool shared = false) noexcept;

/// Wakes every thread blocked on `word`.
inline int futex_wake_all(const std::atomic<std::uint32_t>& word, bool shared = false) noexcept {
  return futex_wake(word, 0x7fffffff, shared);
}

/// The deadline of `t` as an absolute CLOCK_MONOTONIC time, for system calls that take one
/// (pthread_mutex_clocklock, clock_nanosleep with TIMER_ABSTIME). `t` must not be forever.
timespec monotonic_deadline(const timeout& t) noexcept;

/// ppoll(fds, n) until an event or the deadline of `t`: returns ppoll's result (> 0: events, 0:
/// the deadline passed), or -1 with errno for a failure other than EINTR. A signal never
/// shortens or extends the wait: an interrupted ppoll is retried with the time that is left.
int ppoll_until(pollfd* fds, nfds_t n, const timeout& t) noexcept;

/// As above, and also returns 0 promptly once a stop is requested on `st` (a stop callback wakes
/// ppoll through an eventfd). Returns -1 with errno when the eventfd cannot be made.
int ppoll_until(pollfd* fds, nfds_t n, const timeout& t, const std::stop_token& st) noexcept;

/// A polite pause for spin loops (PAUSE on x86, YIELD on ARM).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

} // namespace tandem::detail
