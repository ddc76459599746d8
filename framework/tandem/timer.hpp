// tandem::timer: Python's `threading.Timer`, a thread that calls a function after an interval
// unless it is cancelled first.
//
//   tandem::timer t{30s, [] { std::puts("too slow"); }};
//   t.start();                 // the interval starts now, in the new thread
//   ... work ...
//   t.cancel();                // the function will not run (if it has not started yet)
//
// A timer is a tandem::thread (name "Thread-N", daemon flag inherited, start(), join(),
// is_alive(), ...) whose body waits for the interval and then calls the function with copies of
// the arguments given at construction (or with the thread's std::stop_token first, if the
// function takes one). States: waiting (from start() until the interval passes), then either
// cancelled (the function never runs) or firing (the function runs; cancel() no longer has any
// effect), then finished.
//
// cancel() during the wait ends it promptly: the thread wakes at once and finishes without
// calling the function. cancel() before start() means the function never runs; cancel() while or
// after the function runs does nothing. request_stop() on the timer's thread acts as cancel().
//
// The interval is any std::chrono::duration, with tandem::timeout's rules: negative means zero,
// a duration past timeout_max means forever (the function then never runs), NaN is a
// value_error at construction.
//
// Thread-safety: cancel() may be called from any thread, at any time, any number of times.
// Performance: the wait is one futex wait; cancel() is one exchange and, if the timer waits, one
// futex wake.
#pragma once

#include <tandem/detail/futex.hpp>
#include <tandem/thread.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tandem {

namespace detail {

/// What a timer and its thread share: 0 while the timer may still fire, 1 once it was cancelled
/// or has fired.
struct timer_control {
  std::atomic<std::uint32_t> done{0};
};

} // namespace detail

class timer : public thread {
public:
  // -- construction ---------------------------------------------------------------------------

  /// A timer that, once started, calls `f(args...)` after `interval` unless cancelled. `f` and
  /// `args` are copied now, as for tandem::thread. Does not start the timer.
  ///
  /// Throws value_error for a NaN interval; std::bad_alloc, or what copying `f` or an argument
  /// throws.
  // clang-format 14 mangles requires-clauses.
  // clang-format off
  template <class Rep, class Period, class F, class... Args>
    requires detail::thread_target<F, Args...>
  timer(std::chrono::duration<Rep, Period> interval, F&& f, Args&&... args)
      : timer(options{}, interval, std::forward<F>(f), std::forward<Args>(args)...) {}

  /// As above, with thread options: `timer t{{.name = "reminder"}, 5s, f}`.
  template <class Rep, class Period, class F, class... Args>
    requires detail::thread_target<F, Args...>
  timer(options opts, std::chrono::duration<Rep, Period> interval, F&& f, Args&&... args)
      : timer(std::make_shared<detail::timer_control>(), std::move(opts), checked(interval),
              std::forward<F>(f), std::forward<Args>(args)...) {}
  // clang-format on

  timer(timer&&) noexcept = default;
  timer& operator=(timer&&) noexcept = default;

  // -- control --------------------------------------------------------------------------------

  /// Stops the timer if it is still waiting: the function will not run, and a waiting thread
  /// finishes promptly. Does nothing once the function has started, or on a moved-from timer.
  void cancel() noexcept {
    if (control_ && control_->done.exchange(1, std::memory_order_acq_rel) == 0)
      detail::futex_wake_all(control_->done);
  }

private:
  template <class Rep, class Period>
  static std::chrono::duration<Rep, Period> checked(std::chrono::duration<Rep, Period> d) {
    [[maybe_unused]] timeout probe{d}; // NaN throws here, not later in the thread
    return d;
  }

  template <class Rep, class Period, class F, class... Args>
  timer(std::shared_ptr<detail::timer_control> control, options opts,
        std::chrono::duration<Rep, Period> interval, F&& f, Args&&... args)
      : thread(std::move(opts),
               body<std::chrono::duration<Rep, Period>, std::decay_t<F>, std::decay_t<Args>...>{
                   control, interval},
               std::forward<F>(f), std::forward<Args>(args)...),
        control_(std::move(control)) {}

  // The thread's target: waits, then fires unless cancelled. Takes the user's function and
  // arguments as its own arguments, so tandem::thread copies them once.
  template <class Interval, class F, class... Args>
  struct body {
    std::shared_ptr<detail::timer_control> control;
    Interval interval;

    void operator()(std::stop_token st, F fn, Args... args) {
      timeout deadline{interval}; // the interval counts from here, as Python's Timer.run()
      while (control->done.load(std::memory_order_acquire) == 0 && !st.stop_requested())
        if (!detail::futex_wait(control->done, 0, deadline, st)) break; // the interval passed
      // Claiming `done` makes a later cancel() a no-op, and loses to an earlier one.
      if (st.stop_requested() || control->done.exchange(1, std::memory_order_acq_rel) != 0) return;
      std::tuple<Args...> xs{std::move(args)...};
      detail::invoke_target(fn, xs, std::move(st));
    }
  };

  std::shared_ptr<detail::timer_control> control_;
};

} // namespace tandem
