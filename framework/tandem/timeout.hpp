// tandem::timeout: the one way every blocking call in tandem is told how long it may block.
//
// A timeout is a deadline on the monotonic clock (std::chrono::steady_clock), or `forever`. It is
// built implicitly from any std::chrono::duration (relative to the moment of construction) or from
// a steady_clock::time_point (absolute):
//
//   tandem::lock l;
//   l.acquire(250ms);                                  // relative
//   l.acquire(std::chrono::steady_clock::now() + 1s);  // absolute
//   l.acquire(tandem::forever);                        // the default
//   l.acquire(0s);                                     // try once, never block
//
// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to an
// immediate deadline. A zero timeout means "try once, do not block". A duration so large that
// the deadline would overflow the clock (or at least `timeout_max`) means forever; it never wraps.
// A floating-point duration that is NaN is a value_error (as Python's `timeout=float("nan")`).
//
// Because a relative timeout is converted to a deadline when it is constructed, a loop that
// retries a wait keeps one `timeout` object and passes it again: the total wait stays bounded.
//
// Thread-safety: a timeout is an immutable value; copy it freely.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace tandem {

namespace detail {
[[noreturn]] void throw_nan_timeout();
} // namespace detail

/// Python's `threading.TIMEOUT_MAX`: the longest timeout that is still a finite wait. Any longer
/// duration is `forever`.
inline constexpr std::chrono::seconds timeout_max{9'223'372'036};

class timeout {
public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;
  using duration = clock::duration;

  // -- construction ---------------------------------------------------------------------------

  /// Forever: the wait blocks until it succeeds (or its stop token is triggered).
  constexpr timeout() noexcept = default;

  /// A deadline `d` from now. Negative and zero durations give an immediate deadline.
  template <class Rep, class Period>
  timeout(std::chrono::duration<Rep, Period> d) // NOLINT(google-explicit-constructor)
      : deadline_(from_duration(d)) {}

  /// An absolute deadline on the steady clock.
  constexpr timeout(time_point tp) noexcept : deadline_(tp) {} // NOLINT

  /// An absolute deadline on the steady clock in another unit. A deadline past the clock's range
  /// means forever; a NaN deadline is a value_error.
  template <class Duration>
  requires(!std::is_same_v<Duration, duration>)
      timeout(std::chrono::time_point<clock, Duration> tp) // NOLINT
      : deadline_(from_ns(std::chrono::duration_cast<ld_ns>(tp.time_since_epoch()).count())) {}

  /// The deadline `tp` of any clock. A steady_clock deadline is kept as is; any other clock's
  /// deadline becomes the duration left until it, measured now on that clock (as the standard asks
  /// of try_lock_until), so a wall-clock jump after the call does not change the wait.
  template <class Clock, class Duration>
  static timeout until(const std::chrono::time_point<Clock, Duration>& tp) {
    if constexpr (std::is_same_v<Clock, clock>) {
      return timeout{tp};
    } else {
      // In long double, so that no unit conversion between the clocks can overflow.
      auto left = std::chrono::duration_cast<ld_ns>(tp.time_since_epoch()) -
                  std::chrono::duration_cast<ld_ns>(Clock::now().time_since_epoch());
      return timeout{left};
    }
  }

  /// A timeout that never blocks: `try once`.
  static timeout immediate() noexcept { return timeout{clock::now()}; }

  // -- observers ------------------------------------------------------------------------------

  /// True when this timeout never expires.
  constexpr bool is_forever() const noexcept { return deadline_ == time_point::max(); }

  /// The absolute deadline; time_point::max() when forever.
  constexpr time_point deadline() const noexcept { return deadline_; }

  /// True when the deadline has passed (never for forever).
  bool expired() const noexcept { return !is_forever() && clock::now() >= deadline_; }

  /// Time left until the deadline: zero once expired, duration::max() when forever.
  duration remaining() const noexcept {
    if (is_forever()) return duration::max();
    auto now = clock::now();
    return now >= deadline_ ? duration::zero() : deadline_ - now;
  }

  friend constexpr bool operator==(const timeout&, const timeout&) noexcept = default;

private:
  using ld_ns = std::chrono::duration<long double, std::nano>;

  template <class Rep, class Period>
  static time_point from_duration(std::chrono::duration<Rep, Period> d) {
    if constexpr (std::is_floating_point_v<Rep>) {
      if (std::isnan(d.count())) detail::throw_nan_timeout();
    }
    // Compare in long double nanoseconds: no integer cast of an arbitrary duration can overflow.
    auto ns = std::chrono::duration_cast<ld_ns>(d).count();
    auto now = clock::now();
    if (ns <= 0) return now;
    auto room = static_cast<long double>((time_point::max() - now).count());
    auto cap = static_cast<long double>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(timeout_max).count());
    if (ns >= room || ns >= cap) return time_point::max();
    return now + duration{static_cast<duration::rep>(std::ceil(ns))};
  }

  // A deadline given as nanoseconds since the clock's epoch, saturated to the clock's range.
  static time_point from_ns(long double ns) {
    if (std::isnan(ns)) detail::throw_nan_timeout();
    if (ns >= static_cast<long double>(time_point::max().time_since_epoch().count()))
      return time_point::max();
    if (ns <= static_cast<long double>(time_point::min().time_since_epoch().count()))
      return time_point::min();
    return time_point{duration{static_cast<duration::rep>(std::ceil(ns))}};
  }

  time_point deadline_ = time_point::max();
};

/// The default of every blocking call: wait as long as it takes.
inline constexpr timeout forever{};

} // namespace tandem
