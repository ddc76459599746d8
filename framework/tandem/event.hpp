// tandem::event: Python's `threading.Event`, a flag that threads can wait for.
//
// An event is either set or clear (it starts clear). set() sets it and wakes every waiter;
// clear() clears it; wait() returns at once while it is set, and otherwise blocks until the next
// set() or its timeout.
//
// A waiter blocked when set() is called returns true even if clear() follows at once, before the
// waiter got to run: every set() of a clear event starts a new generation, and a waiter returns
// true when the generation changed while it waited (Python's "wait() returns true even when the
// event is cleared before the waiting thread is woken up").
//
//   tandem::event ready;
//   std::thread worker{[&] { load(); ready.set(); }};
//   if (!ready.wait(5s))
//     throw std::runtime_error("the worker did not get ready in time");
//
// Memory ordering: everything a thread wrote before set() is visible to a thread once its wait()
// returns true or its is_set() returns true because of that set(). clear() orders nothing useful.
//
// Performance: set() is one compare-exchange (and a futex wake only when someone sleeps); wait()
// on a set event and is_set() are one load. Waiters sleep on the event's own futex word.
//
// Thread-safety: every member may be called concurrently from any thread.
//
// Lifetime: destroying an event while threads wait on it is undefined behaviour. An event is
// neither copyable nor movable.
#pragma once

#include <tandem/detail/futex.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <cstdint>
#include <stop_token>

namespace tandem {

class event {
public:
  // -- construction ---------------------------------------------------------------------------

  /// A clear event.
  constexpr event() noexcept = default;

  event(const event&) = delete;
  event& operator=(const event&) = delete;

  // -- modifiers ------------------------------------------------------------------------------

  /// Sets the event and wakes every thread blocked in wait(). Setting a set event changes
  /// nothing (and wakes nobody).
  void set() noexcept {
    auto w = word_.load(std::memory_order_relaxed);
    std::uint32_t next;
    do {
      // A clear event moves to the next generation, set, with no sleepers recorded (they are all
      // woken below). The read-modify-write even on a set event keeps set() a release operation.
      next = (w & set_bit) != 0 ? w : ((w & ~waiters_bit) + generation_one) | set_bit;
    } while (!word_.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                          std::memory_order_relaxed));
    if ((w & (set_bit | waiters_bit)) == waiters_bit) detail::futex_wake_all(word_);
  }

  /// Clears the event: later wait() calls block until the next set(). Threads that were blocked
  /// when the last set() happened still return true. Never blocks, never throws.
  void clear() noexcept { word_.fetch_and(~set_bit, std::memory_order_acq_rel); }

  // -- waiting --------------------------------------------------------------------------------

  /// Blocks until the event is set or `t` expires. Returns true when the event was set, or was set
  /// while this thread waited (even if cleared again since); false when the timeout expired first.
  /// On a set event, returns true at once.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  bool wait(timeout t = forever) noexcept {
    auto w = word_.load(std::memory_order_acquire);
    if ((w & set_bit) != 0) return true;
    return wait_slow(w, t, nullptr);
  }

  /// As wait(t), and also returns false promptly once `st` is stopped (unless the event was set
  /// first). A stop request never throws.
  bool wait(const std::stop_token& st, timeout t = forever) noexcept {
    auto w = word_.load(std::memory_order_acquire);
    if ((w & set_bit) != 0) return true;
    return wait_slow(w, t, &st);
  }

  // -- observers ------------------------------------------------------------------------------

  /// True while the event is set (a snapshot).
  bool is_set() const noexcept { return (word_.load(std::memory_order_acquire) & set_bit) != 0; }

private:
  // The futex word: bit 0 the flag, bit 1 "a thread may sleep on this word", bits 2-31 the
  // generation, advanced by each set() of a clear event. The generation lets a waiter tell
  // "set, then cleared" from "never set" (it wraps after 2^30 sets, which no sleeper outlasts).
  static constexpr std::uint32_t set_bit = 1;
  static constexpr std::uint32_t waiters_bit = 2;
  static constexpr std::uint32_t generation_one = 4;

  static bool set_since(std::uint32_t start, std::uint32_t now) noexcept {
    return (now & set_bit) != 0 ||
           (now & ~(set_bit | waiters_bit)) != (start & ~(set_bit | waiters_bit));
  }

  bool wait_slow(std::uint32_t w, const timeout& t, const std::stop_token* st) noexcept {
    const auto start = w;
    for (;;) {
      if (set_since(start, w)) return true;
      if ((!t.is_forever() && t.expired()) || (st != nullptr && st->stop_requested())) return false;
      if ((w & waiters_bit) == 0) {
        if (!word_.compare_exchange_weak(w, w | waiters_bit, std::memory_order_acquire,
                                         std::memory_order_acquire))
          continue;
        w |= waiters_bit;
      }
      bool in_time =
          st != nullptr ? detail::futex_wait(word_, w, t, *st) : detail::futex_wait(word_, w, t);
      w = word_.load(std::memory_order_acquire);
      if (!in_time) return set_since(start, w);
    }
  }

  std::atomic<std::uint32_t> word_{0};
};

} // namespace tandem
