// tandem::thread: Python's `threading.Thread`, and the module-level functions of `threading`
// (current_thread, main_thread, enumerate, active_count, get_ident, get_native_id, excepthook,
// set_excepthook, stack_size; TIMEOUT_MAX is tandem::timeout_max in timeout.hpp).
//
// A thread runs a target with arguments, or a subclass's run(), in a new OS thread:
//
//   tandem::thread t{[](int n) { work(n); }, 42};          // arguments are copied now
//   t.start();                                            // returns once the thread runs
//   t.join();
//
//   tandem::thread w{{.name = "poller", .daemon = true},  // options by designated initializer
//                    [](std::stop_token st, int period) { // the thread's stop token first, as
//                      while (!st.stop_requested())       // std::jthread passes it
//                        poll(period);
//                    },
//                    50};
//   w.start();
//   w.request_stop();
//
//   class worker : public tandem::thread {                // or subclass and override run()
//   protected:
//     void run() override { ... }
//   };
//
// States: a thread is created (not started: construction never starts it), then started by
// start(), alive while its body runs, and finished once the body has returned or thrown. A
// thread can be started once.
//
// A `thread` object is a handle (move-only). The OS thread and its state live on when the handle
// is destroyed: destroying the handle of a running thread detaches it, and the thread keeps
// running; the runtime (and, without one, the end of `main`) still joins it if it is not a
// daemon. current_thread(), main_thread() and enumerate() give handles to the same threads;
// two handles compare equal when they name the same thread.
//
// Daemon threads: a thread inherits the daemon flag of the thread that creates it (the main
// thread is not a daemon; threads tandem did not start are). When the program ends (the
// runtime's shutdown, or returning from `main` without a runtime) every non-daemon thread is
// joined, also threads started by other threads and threads whose handle was destroyed; daemon
// threads get a stop request and are not waited for. As in Python, a non-daemon thread that never
// ends keeps the program from ending; runtime::shutdown(deadline) bounds the wait.
//
// Exceptions: an exception escaping the body goes to the excepthook (see set_excepthook), in the
// failing thread, before join() returns. It never reaches join() and never terminates the
// program.
//
// Thread-safety: every member may be called from any thread. The subclass object, though, is
// where run() executes: it must stay alive and in place (not moved from) until its thread has
// finished, for example by joining in the subclass's destructor.
//
// Performance: start() creates one OS thread (pthread_create, detached) and waits for it with
// one futex wake; the state, target and arguments share one allocation.
#pragma once

#include <tandem/detail/thread_state.hpp>
#include <tandem/mailbox.hpp>
#include <tandem/timeout.hpp>

#include <caf/fwd.hpp>

#include <concepts>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace tandem {

namespace detail {

/// True when F can run with Args (as std::thread invokes: decayed copies, passed as rvalues),
/// with or without a std::stop_token first.
template <class F, class... Args>
concept thread_target = std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...> ||
    std::is_invocable_v<std::decay_t<F>, std::stop_token, std::decay_t<Args>...>;

/// Calls `fn` once with the decayed arguments in `xs` as rvalues, and `st` first when `fn` takes
/// a std::stop_token there (std::jthread's rule).
template <class F, class... Args>
void invoke_target(F& fn, std::tuple<Args...>& xs, std::stop_token st) {
  if constexpr (std::is_invocable_v<F, std::stop_token, Args...>)
    std::apply([&](auto&... a) { std::invoke(std::move(fn), std::move(st), std::move(a)...); }, xs);
  else
    std::apply([&](auto&... a) { std::invoke(std::move(fn), std::move(a)...); }, xs);
}

/// Gives the mailbox and actor layers the state behind a handle.
struct thread_access;

} // namespace detail

class thread {
public:
  using options = thread_options;

  // -- construction ---------------------------------------------------------------------------

  /// A thread whose body is run(): Python's `Thread()`. Subclasses use this constructor and
  /// override run(); for `thread` itself run() does nothing. Name and daemon flag as in `opts`
  /// (defaults: "Thread-N", the creating thread's daemon flag).
  explicit thread(options opts = {});

  /// A thread that will call `f(args...)`, or `f(stop_token, args...)` when `f` takes the thread's
  /// std::stop_token first (as std::jthread). `f` and `args` are copied (decayed) now; pass
  /// std::ref to share an object. They are destroyed in the thread once the call has returned.
  ///
  /// Throws std::bad_alloc, or what copying `f` or an argument throws.
  // clang-format 14 mangles requires-clauses.
  // clang-format off
  template <class F, class... Args>
    requires detail::thread_target<F, Args...>
  explicit thread(F&& f, Args&&... args)
      : thread(options{}, std::forward<F>(f), std::forward<Args>(args)...) {}

  /// As above, with options: `thread t{{.name = "w", .daemon = true}, f, args...}`.
  template <class F, class... Args>
    requires detail::thread_target<F, Args...>
  thread(options opts, F&& f, Args&&... args)
      : state_(make_state(std::move(opts), std::forward<F>(f), std::forward<Args>(args)...)) {}
  // clang-format on

  /// Moves the handle; `other` becomes an empty handle (every member except the destructor and
  /// assignment then throws usage_error or returns an empty result).
  thread(thread&& other) noexcept = default;
  thread& operator=(thread&& other) noexcept = default;

  thread(const thread&) = delete;
  thread& operator=(const thread&) = delete;

  /// Releases the handle. A running thread keeps running (see the file comment); a thread that
  /// was never started is discarded.
  virtual ~thread();

  // -- control --------------------------------------------------------------------------------

  /// Starts the thread and returns once it runs: ident() and native_id() are set, is_alive() is
  /// true (unless the body has already finished), and enumerate() lists it.
  ///
  /// Throws usage_error if the thread was started before (Python: "threads can only be started
  /// once") or is an empty handle; tandem::error with the system's error code when the OS refuses
  /// a new thread (the thread can then be started again).
  ///
  /// Memory ordering: everything the caller did before start() happens before the body runs.
  ///
  /// Lifetime: the first start() of a program also installs the exit handling (an atexit
  /// handler that joins the non-daemon threads): static objects built before it are destroyed
  /// after those threads finished; static objects first built later are destroyed before.
  void start();

  /// Blocks until the thread has finished or `t` expires. Returns true when it has finished:
  /// its body has returned or thrown, the excepthook has run, its target, arguments and locals
  /// are destroyed. Many threads may join the same thread. Never rethrows the body's exception.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  ///
  /// Throws usage_error when the thread was not started ("cannot join thread before it is
  /// started"), is the calling thread ("cannot join current thread"), is a thread tandem did not
  /// start ("Dummy-N"), or the handle is empty.
  ///
  /// Memory ordering: everything the thread did happens before a join() that returns true.
  bool join(timeout t = forever);

  /// As join(t), and returns false promptly once `st` is stopped.
  bool join(std::stop_token st, timeout t = forever);

  /// Requests the thread's stop token to stop (the token given to a target that takes one, and
  /// get_stop_token()). Returns whether this call made the request. Does nothing else: the body
  /// decides when to return.
  bool request_stop() noexcept;

  /// The thread's stop token. Empty (stop_possible() false) for an empty handle.
  std::stop_token get_stop_token() const noexcept;

  // -- observers ------------------------------------------------------------------------------

  /// The thread's name: "Thread-N" by default (N counts threads created in this process, from 1),
  /// "MainThread" for the main thread, "Dummy-N" for a thread tandem did not start. Several
  /// threads may share a name.
  std::string name() const;

  /// Renames the thread (allowed at any time). The OS-level name (shown by ps and debuggers, 15
  /// bytes) is set once, when the thread starts.
  void name(std::string new_name);

  /// The thread's identifier (std::this_thread::get_id() in it), once started; kept after it
  /// finishes (and may then be reused by a new thread). Empty before start().
  std::optional<std::thread::id> ident() const noexcept;

  /// The thread's kernel id (gettid), once started; kept after it finishes. Empty before start().
  std::optional<long> native_id() const noexcept;

  /// True from the moment start() returns (at the latest) until the body has finished; the main
  /// thread is alive until the program's exit handling, a thread tandem did not start until it
  /// ends.
  bool is_alive() const noexcept;

  /// Whether the thread is a daemon (see the file comment).
  bool daemon() const noexcept;

  /// Sets the daemon flag. Throws usage_error once the thread has been started.
  void set_daemon(bool daemonic);

  /// The same as set_daemon(daemonic), spelled like name(new_name) (Python: `t.daemon = True`).
  void daemon(bool daemonic) { set_daemon(daemonic); }

  // -- messaging: the thread as an actor -----------------------------------------------------

  /// The thread's mailbox: a FIFO of messages with Queue semantics (capacity from
  /// options::mailbox_capacity, get with timeout, task_done/join, qsize, shutdown; see
  /// mailbox.hpp). Made on first use, also before start() (messages sent then wait for the
  /// thread). The thread reads it with tandem::receive(handlers..., timeout) or mailbox().get().
  /// When the thread ends, its mailbox is shut down at once: later sends throw shut_down_error,
  /// blocked senders wake with it, and pending requests from actors are answered with an error.
  ///
  /// Throws usage_error for an empty handle, std::bad_alloc.
  tandem::mailbox& mailbox();

  /// Puts caf::make_message(xs...) into the thread's mailbox, from any thread; blocks while the
  /// mailbox is full. The message carries the sending thread's actor as its sender only when that
  /// thread already has one (see mailbox::send); for an answer, send with
  /// tandem::send_to(worker.actor(), ...). Throws shut_down_error once the thread has ended.
  ///
  ///   worker.send(std::string{"job"}, 42);
  template <class... Ts>
  void send(Ts&&... xs) {
    mailbox().send(std::forward<Ts>(xs)...);
  }

  /// The thread's address as a caf::actor: CAF actors send to it (the messages arrive in the
  /// mailbox, requests are answered by the values receive()'s handlers return), monitor it (a
  /// caf::down_msg when the thread ends: exit reason normal, or unhandled_exception carrying the
  /// exception's what() when the target threw) and link to it. Made on first use in the
  /// current runtime's actor system (runtime::current()); the same actor every call. For a
  /// thread that has already ended, an actor that is already down.
  ///
  /// Throws usage_error for an empty handle, std::bad_alloc.
  caf::actor actor() const;

  /// True when both handles name the same thread (two empty handles are equal).
  friend bool operator==(const thread& a, const thread& b) noexcept { return a.state_ == b.state_; }

protected:
  // -- body -----------------------------------------------------------------------------------

  /// The thread's body, called in the new thread by start(). Override it in a subclass (with
  /// the constructor that takes no target); an exception escaping it goes to the excepthook.
  /// For a thread with a target, the target runs instead.
  virtual void run();

private:
  friend struct detail::thread_access;

  explicit thread(std::shared_ptr<detail::thread_state> state) noexcept
      : state_(std::move(state)) {}

  /// The new OS thread's entry point (pthread_create).
  static void* bootstrap(void* state);

  template <class F, class... Args>
  static std::shared_ptr<detail::thread_state> make_state(options opts, F&& f, Args&&... args) {
    auto body = [fn = std::decay_t<F>(std::forward<F>(f)),
                 xs = std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...)](
                    std::stop_token st) mutable { detail::invoke_target(fn, xs, std::move(st)); };
    return std::make_shared<detail::thread_state_with_target<decltype(body)>>(
        resolve(std::move(opts)), std::move(body));
  }

  /// `opts` with the default name and daemon flag filled in.
  static options resolve(options opts);

  /// The state, or usage_error for an empty handle.
  detail::thread_state& checked(const char* what) const;

  std::shared_ptr<detail::thread_state> state_;
};

namespace detail {

/// For tandem's own layers (registry, mailbox, actor): the state behind a handle, and handles
/// made from a state.
struct thread_access {
  static const std::shared_ptr<thread_state>& state(const thread& t) noexcept { return t.state_; }
  static std::shared_ptr<thread_state>& state(thread& t) noexcept { return t.state_; }
  static thread make(std::shared_ptr<thread_state> s) noexcept { return thread{std::move(s)}; }
};

} // namespace detail

// -- module-level functions ---------------------------------------------------------------------

/// The calling thread's handle. For a thread tandem did not start (a std::thread, say), the first
/// call gives it a handle named "Dummy-N", daemon, alive until that thread ends, listed by
/// enumerate(), which cannot be joined (as Python's dummy threads). In a subclass's thread it is
/// the subclass object itself. The reference stays valid while the calling thread runs.
thread& current_thread();

/// The main thread's handle ("MainThread", not a daemon): the thread that runs `main`. In a
/// child created by fork(), the thread that called fork().
thread& main_thread();

/// Handles of every alive thread: started tandem threads that have not finished, the main
/// thread, and threads tandem did not start that have called current_thread() (directly or by
/// creating a tandem::thread). A thread is listed once start() has returned, and not after
/// join() has returned true.
std::vector<thread> enumerate();

/// The number of alive threads: enumerate().size(), without building handles.
std::size_t active_count();

/// The calling thread's identifier: std::this_thread::get_id(), which is current_thread().ident().
std::thread::id get_ident() noexcept;

/// The calling thread's kernel id (gettid), which is current_thread().native_id().
long get_native_id() noexcept;

/// What the excepthook receives.
struct excepthook_args {
  /// The exception that escaped the thread's body.
  std::exception_ptr exc;
  /// The failing thread (its handle, as current_thread() in it); null only if none is known.
  tandem::thread* thread = nullptr;
};

/// A function handling exceptions that escape threads.
using excepthook_function = std::function<void(const excepthook_args&)>;

/// Python's `threading.excepthook` assignment: installs `hook` for every thread, from now on
/// (the hook is looked up when an exception escapes). An empty function restores the default.
/// The hook runs in the failing thread, before join() returns; if it throws, "Exception in
/// threading excepthook:" and what it threw are printed to stderr instead.
/// Thread-safe.
void set_excepthook(excepthook_function hook);

/// The excepthook in effect (default_excepthook unless set_excepthook installed another).
excepthook_function excepthook();

/// Python's `threading.__excepthook__`: prints "Exception in thread NAME:" and then the
/// exception's type and what() ("std::runtime_error: boom") to stderr, in one write.
void default_excepthook(const excepthook_args& args);

/// The stack size of threads started from now on, in bytes; 0 means the platform's default.
std::size_t stack_size() noexcept;

/// Sets the stack size of threads started from now on (0: the platform's default) and returns
/// the previous setting. Throws value_error for a size below 32 KiB (other than 0) or one the
/// platform refuses; the setting is then unchanged.
std::size_t stack_size(std::size_t size);

} // namespace tandem
