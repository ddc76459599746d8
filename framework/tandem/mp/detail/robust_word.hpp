// The machinery under tandem::mp's synchronization primitives: who the calling process and thread
// are, whether another process is still alive, and a robust lock word that lives in shared memory.
//
// Process identity. A process is named by a 64-bit *tag*: its pid in the high half and the low 32
// bits of its start time (in clock ticks since boot, /proc/<pid>/stat field 22) in the low half.
// The start time tells a live process from a later one that reuses the pid. The calling process's
// tag, pid and thread id are cached (a child made by glibc's fork() refreshes them through an
// atfork handler; a raw clone system call would not), so taking a lock makes no system call.
//
// When the start time cannot be read (no /proc, or no descriptor left: EMFILE), the tag carries
// start time 0 and names the pid alone; such a tag is not cached, so that a later call can still
// learn the start time (the tag of a process may therefore change once, from pid-only to full).
// Two tags name the same process when their pids are equal and their start times are equal or
// one of them is 0 (same_process()).
//
// Liveness. process_alive(tag) is false when no process has that pid, when it is a zombie (killed
// but not yet reaped), or when the process with that pid started at another time. Pids are those
// of the caller's pid namespace: processes that share a primitive must share the namespace. Only
// a definite answer counts as death: when /proc cannot tell (not mounted, another user's process
// hidden by hidepid, no descriptor left, an unexpected error, an unreadable line), or the tag has
// no start time, a process that kill(pid, 0) finds counts as alive: a takeover may come later,
// never from a live holder.
//
// robust_word. A mutex word (32 bits, a futex) holding the pid of the process that holds it, plus
// the holder's tag. It has no owner thread: any thread of any process may unlock it (as Python's
// multiprocessing.Lock, a semaphore, may be released by anyone). Blocked lockers sleep in slices
// of at most `check_interval`; whenever a slice's worth of time has passed since their last
// check (whatever their waits returned: a kernel without futex_waitv, or a seccomp filter that
// forbids it, turns stop-token waits into short polls that never report a timeout) they check
// whether the holder is alive, and take the word over from a dead holder, reporting
// `owner_died`. A process killed while holding the word is therefore detected by the next locker,
// and by any locker already blocked, within one slice plus one liveness check (well under a
// second). The kernel's robust-futex list is not used: glibc owns it.
//
// One hole remains, documented rather than closed: a holder killed in the few instructions
// between taking the word and publishing its tag is known by its pid alone. If that pid is reused
// before a locker looks, lockers wait until the process that reuses it exits (never a wrong
// takeover, and only for a kill that lands in that window).
//
// Every member is address-independent and works in a MAP_SHARED mapping (futexes are
// process-shared). All state is inline; the object is trivially destructible.
#pragma once

#include <tandem/timeout.hpp>

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stop_token>

namespace tandem::mp::detail {

// -- identities ---------------------------------------------------------------------------------

/// The calling process's pid (cached; refreshed in a fork() child).
pid_t self_pid() noexcept;

/// The calling thread's kernel thread id (cached per thread; refreshed in a fork() child).
pid_t self_tid() noexcept;

/// The calling process's tag (see the file comment).
std::uint64_t self_tag() noexcept;

/// The calling thread's key: pid in the high half, tid in the low half. Unique among the threads
/// alive in the pid namespace.
inline std::uint64_t self_thread_key() noexcept {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(self_pid())) << 32) |
         static_cast<std::uint32_t>(self_tid());
}

/// The pid part of a tag.
constexpr pid_t tag_pid(std::uint64_t tag) noexcept {
  return static_cast<pid_t>(tag >> 32);
}

/// The start-time part of a tag; 0 when the start time was unknown (a pid-only tag).
constexpr std::uint32_t tag_start(std::uint64_t tag) noexcept {
  return static_cast<std::uint32_t>(tag);
}

/// True when tags `a` and `b` name the same process: equal pids, and equal start times unless
/// one of them is unknown (0).
constexpr bool same_process(std::uint64_t a, std::uint64_t b) noexcept {
  return tag_pid(a) == tag_pid(b) &&
         (tag_start(a) == tag_start(b) || tag_start(a) == 0 || tag_start(b) == 0);
}

/// True when `tag` names the calling process (same_process(tag, self_tag())).
inline bool is_self(std::uint64_t tag) noexcept {
  return same_process(tag, self_tag());
}

/// False when the process named by `tag` is gone (see the file comment). The calling process is
/// always alive.
bool process_alive(std::uint64_t tag) noexcept;

/// False when no live process has the pid `pid` (no pid-reuse check: the start time is unknown).
bool pid_alive(pid_t pid) noexcept;

/// A random number drawn once per program image: the same in fork() children, different after
/// exec. Objects that keep process-local pointers compare it to know whether they may use them.
std::uint64_t image_cookie() noexcept;

/// How often blocked waiters check that the processes they wait for are alive.
inline constexpr std::chrono::milliseconds check_interval{100};

/// Points in the middle of internal updates where a test can stop (and kill) a process.
enum class fault_point : int {
  /// mp::semaphore with return_on_death: a take has lowered the count under the internal lock
  /// but not yet recorded the holding.
  semaphore_take_counted,
  /// mp::condition::notify: a waiter has been chosen but not yet woken.
  condition_waiter_chosen,
};

/// Fault injection for tests: when set, called at each fault_point (null, the default, costs one
/// relaxed load per point). Set it only in a process that a test is about to kill.
inline std::atomic<void (*)(fault_point)> fault_hook{nullptr};

/// Calls fault_hook at `p` when one is set.
inline void at_fault_point(fault_point p) noexcept {
  if (auto* hook = fault_hook.load(std::memory_order_relaxed)) hook(p);
}

/// `t`, shortened to end at most `check_interval` from now.
timeout check_slice(const timeout& t) noexcept;

// -- the robust word ----------------------------------------------------------------------------

/// What an attempt to lock a robust_word ended with.
enum class lock_result : int {
  /// The caller holds the word.
  acquired,
  /// The caller holds the word, taken over from a holder that died.
  owner_died,
  /// The timeout expired (or the stop token was triggered) first; the caller does not hold it.
  timed_out,
  /// The word was marked not recoverable; the caller does not hold it.
  not_recoverable,
};

/// What unlocking a robust_word found.
enum class unlock_result : int { unlocked, was_free, not_recoverable };

/// A process-shared mutex word that notices dead holders (see the file comment).
class robust_word {
public:
  constexpr robust_word() noexcept = default;
  robust_word(const robust_word&) = delete;
  robust_word& operator=(const robust_word&) = delete;

  /// One attempt, never blocks: acquired, or owner_died when the holder is dead (the caller takes
  /// the word over), or timed_out when a live process holds it, or not_recoverable.
  lock_result try_lock() noexcept {
    std::uint32_t expected = 0;
    auto pid = static_cast<std::uint32_t>(self_pid());
    if (word_.compare_exchange_strong(expected, pid, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
      holder_.store(self_tag(), std::memory_order_relaxed);
      return lock_result::acquired;
    }
    return try_lock_slow(expected);
  }

  /// Blocks until the word is acquired (possibly from a dead holder), `t` expires, or `st` (when
  /// given) is stopped.
  lock_result lock(const timeout& t, const std::stop_token* st = nullptr) noexcept;

  /// Frees the word and wakes one blocked locker. Any process may unlock it.
  unlock_result unlock() noexcept;

  /// Makes the word unusable for good: every later lock returns not_recoverable, and every
  /// blocked locker wakes up to see it.
  void mark_not_recoverable() noexcept;

  /// True when the word is held by a process that is dead (a takeover would succeed). A snapshot;
  /// costs a liveness check (system calls) when the word is held.
  bool holder_died() const noexcept {
    auto v = word_.load(std::memory_order_acquire);
    return v != 0 && v != not_recoverable_value && holder_dead(v);
  }

  /// True when the calling process holds the word and has published its tag: the word names it
  /// by pid and the holder's tag by pid and start time (so a process that reuses the pid of a
  /// dead holder does not pass for it). Meaningful to a thread that locked the word itself.
  bool held_by_self() const noexcept {
    auto v = word_.load(std::memory_order_relaxed);
    if (v == not_recoverable_value || static_cast<pid_t>(v & pid_mask) != self_pid()) return false;
    auto tag = holder_.load(std::memory_order_relaxed);
    return tag != 0 && is_self(tag);
  }

  /// True while some process holds the word (or it is not recoverable). A snapshot.
  bool locked() const noexcept { return word_.load(std::memory_order_relaxed) != 0; }

  /// True when the word is marked not recoverable.
  bool not_recoverable() const noexcept {
    return word_.load(std::memory_order_relaxed) == not_recoverable_value;
  }

  /// The pid of the holding process, or 0.
  pid_t holder_pid() const noexcept {
    auto w = word_.load(std::memory_order_relaxed);
    return w == not_recoverable_value ? 0 : static_cast<pid_t>(w & pid_mask);
  }

private:
  // The word: 0 free; the holder's pid (pids stay below 2^22), with waiters_bit when a locker may
  // sleep on it; or not_recoverable_value.
  static constexpr std::uint32_t waiters_bit = 0x8000'0000u;
  static constexpr std::uint32_t not_recoverable_value = 0x4000'0000u;
  static constexpr std::uint32_t pid_mask = 0x3fff'ffffu;

  lock_result try_lock_slow(std::uint32_t seen) noexcept;

  // True when the holder recorded in `seen` (a locked word value) is dead.
  bool holder_dead(std::uint32_t seen) const noexcept;

  // Takes the word over from the dead holder in `seen`; false when it changed meanwhile.
  bool take_over(std::uint32_t seen) noexcept;

  std::atomic<std::uint32_t> word_{0};
  // The holder's tag, stored right after the word is taken and cleared right before it is freed;
  // 0 (or another pid's tag) while a new holder has not stored it yet.
  std::atomic<std::uint64_t> holder_{0};
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "shared-memory primitives need lock-free 64-bit atomics");

} // namespace tandem::mp::detail
