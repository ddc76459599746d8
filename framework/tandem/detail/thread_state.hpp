// detail::thread_state: everything about one OS thread that outlives the handles naming it.
//
// A tandem::thread is a handle: a shared_ptr to a thread_state. The running thread holds the same
// state, so it lives on when every handle is gone, and the process-wide registry (thread.cpp)
// links the states of alive threads for enumerate(), active_count() and shutdown. Handles made by
// current_thread(), main_thread() and enumerate() share the state too.
//
// Life of a started thread (the `phase` word):
//
//   initial --start()--> starting --new thread registered, ident set--> running --> finished
//
// In the new thread, in this order: the thread is registered and its ident set; start() returns;
// the attachments get on_start; the target (or the subclass's run()) runs; an exception escaping it
// goes to the excepthook; the target and its arguments are destroyed; the thread's tandem::local
// values are destroyed; the attachments are told (on_exit, see below); the thread leaves the
// registry; `phase` becomes finished and joiners wake; the thread drops its reference to the state;
// the count of non-daemon threads that runtime shutdown waits for drops last, so a shutdown that
// returns has nothing of the thread left to run but the OS thread's own exit.
//
// Extension point for the mailbox and actor layers (mailbox.hpp, detail/thread_actor.hpp): a
// thread_attachment stored in `mailbox` or `actor` (or added with attach()) is told through
// on_start(), in the new thread right before the body (if it was attached before start()), and
// through on_exit(), in the finishing thread, right before `phase` becomes finished, with the
// exception that escaped the target (null after a normal return). on_exit is the place to shut
// the mailbox and to send the actor's down message. attach() on a thread that has already passed
// that point returns false, and `exit_exception` holds the reason. The main thread tells its
// attachments at process exit (after the non-daemon threads are joined); a thread that tandem did
// not start
// ("Dummy-N") when it ends.
#pragma once

#include <tandem/detail/futex_mutex.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace tandem {

class thread;

/// The options of a thread, given at construction by designated initializer:
///
///   tandem::thread t{{.name = "worker", .daemon = true}, fn, args...};
///
/// New fields are added at the end, so existing initializers keep compiling. Every field has a
/// default member initializer, so that an initializer naming only some fields stays clean under
/// -Wmissing-field-initializers.
struct thread_options {
  /// The thread's name; empty gives "Thread-N".
  std::string name{};
  /// Whether the thread is a daemon; empty inherits the creating thread's flag.
  std::optional<bool> daemon{};
  /// The capacity of the thread's mailbox: a sender blocks while it holds this many messages
  /// (messages from CAF actors are never blocked, see mailbox.hpp). 0 is unbounded.
  std::size_t mailbox_capacity{0};
};

namespace detail {

class thread_state;

/// Something attached to a thread and told when it ends (see the file comment).
class thread_attachment {
public:
  virtual ~thread_attachment() = default;

  /// Called once, in the finishing thread, after the target has returned (`exc` null) or thrown
  /// (`exc` holds what it threw, after the excepthook ran), after the thread's locals are
  /// destroyed, before join() returns. Must not throw and should not block for long: joiners
  /// and shutdown wait for it.
  virtual void on_exit(thread_state& state, const std::exception_ptr& exc) noexcept = 0;

  /// Called once, in the new thread, right before the body runs, for each attachment the thread
  /// has when it starts (not for attachments added later). The place to make the thread speak
  /// as its actor; undo it in on_exit. Must not throw.
  virtual void on_start(thread_state& state) noexcept { (void)state; }
};

enum class thread_kind : std::uint8_t {
  /// Started by tandem::thread::start().
  started,
  /// The process's initial thread ("MainThread").
  main,
  /// A thread tandem did not start, seen by current_thread() ("Dummy-N").
  dummy,
};

class thread_state : public std::enable_shared_from_this<thread_state> {
public:
  // -- phase word -----------------------------------------------------------------------------

  static constexpr std::uint32_t initial = 0;
  static constexpr std::uint32_t starting = 1;
  static constexpr std::uint32_t running = 2;
  static constexpr std::uint32_t finished = 3;
  /// Set beside a phase by a thread that sleeps until the phase changes.
  static constexpr std::uint32_t waiters = 4;

  // -- construction ---------------------------------------------------------------------------

  /// `opts` with its defaults filled in (name set, daemon engaged).
  thread_state(thread_kind k, thread_options opts)
      : kind(k), daemon(opts.daemon.value_or(false)), options(std::move(opts)),
        name_(std::move(options.name)) {
    options.name.clear();
  }

  thread_state(const thread_state&) = delete;
  thread_state& operator=(const thread_state&) = delete;
  virtual ~thread_state() = default;

  // -- target ---------------------------------------------------------------------------------

  /// Whether a target was given (otherwise a subclass's run() is the body).
  virtual bool has_target() const noexcept { return false; }

  /// Runs the target (once) with the thread's stop token.
  virtual void run_target(std::stop_token) {}

  /// Destroys the target and its arguments.
  virtual void drop_target() noexcept {}

  // -- identity -------------------------------------------------------------------------------

  std::string name() const {
    std::lock_guard guard{mtx};
    return name_;
  }

  void name(std::string n) {
    std::lock_guard guard{mtx};
    name_ = std::move(n);
  }

  /// The phase without the waiters bit. Acquire: ident and native_id are visible once it is
  /// running or finished.
  std::uint32_t current_phase() const noexcept {
    return phase.load(std::memory_order_acquire) & ~waiters;
  }

  // -- attachments ----------------------------------------------------------------------------

  /// Adds an attachment to be told at exit. Returns false (and keeps nothing) when the thread
  /// has already told its attachments; `exit_exception` then holds the reason.
  bool attach(std::shared_ptr<thread_attachment> a) {
    std::lock_guard guard{mtx};
    if (exited) return false;
    attachments.push_back(std::move(a));
    return true;
  }

  /// Tells every attachment present now that the thread starts (mailbox first, then actor,
  /// then the others). Called by the new thread before its body.
  void tell_start() noexcept {
    std::shared_ptr<thread_attachment> box;
    std::shared_ptr<thread_attachment> act;
    std::vector<std::shared_ptr<thread_attachment>> others;
    {
      std::lock_guard guard{mtx};
      if (!mailbox && !actor && attachments.empty()) return;
      box = mailbox;
      act = actor;
      try {
        others = attachments;
      } catch (...) {
        // Out of memory: the other attachments miss on_start (they still get on_exit).
      }
    }
    if (box) box->on_start(*this);
    if (act) act->on_start(*this);
    for (auto& a : others) a->on_start(*this);
  }

  /// Tells every attachment that the thread ends (mailbox first, then actor, then the others),
  /// once. Called by the finishing thread.
  void tell_exit(const std::exception_ptr& exc) noexcept {
    std::shared_ptr<thread_attachment> box;
    std::shared_ptr<thread_attachment> act;
    std::vector<std::shared_ptr<thread_attachment>> others;
    {
      std::lock_guard guard{mtx};
      if (exited) return;
      exited = true;
      exit_exception = exc;
      box = mailbox;
      act = actor;
      others.swap(attachments);
    }
    if (box) box->on_exit(*this, exc);
    if (act) act->on_exit(*this, exc);
    for (auto& a : others) a->on_exit(*this, exc);
  }

  // -- fields ---------------------------------------------------------------------------------

  const thread_kind kind;

  /// Written before start (set_daemon refuses afterwards), read by anyone.
  std::atomic<bool> daemon;

  /// The options as given at construction, defaults filled in. The name lives in name_ (it may
  /// change) and the daemon flag in `daemon`; any other field (such as a mailbox capacity) is
  /// read from here. Not changed after construction.
  thread_options options;

  /// initial/starting/running/finished, plus `waiters`. Futex word.
  std::atomic<std::uint32_t> phase{initial};

  /// Written by the new thread before phase becomes running (release); read after an acquire
  /// load of phase that saw running or finished.
  std::thread::id ident{};
  long native_id = 0;

  /// The thread's stop source; request_stop() and runtime shutdown use it.
  std::stop_source stop;

  /// The subclass object whose run() is the body (subclass mode), set by start().
  thread* owner = nullptr;

  /// The reference the new thread adopts; set by start() just before the OS thread is created.
  std::shared_ptr<thread_state> keep_alive;

  /// Guards name_, the extension slots and the exit bookkeeping.
  mutable futex_mutex mtx;

  /// Extension slots (see the file comment): the thread's mailbox and its actor bridge. Set once,
  /// under mtx, by the layers that own them.
  std::shared_ptr<thread_attachment> mailbox;                  // guarded by mtx
  std::shared_ptr<thread_attachment> actor;                    // guarded by mtx
  std::vector<std::shared_ptr<thread_attachment>> attachments; // guarded by mtx
  bool exited = false;                                         // guarded by mtx
  std::exception_ptr exit_exception;                           // guarded by mtx

  /// Links of the registry's list of alive threads.
  thread_state* prev = nullptr; // guarded by the registry's mutex
  thread_state* next = nullptr; // guarded by the registry's mutex
  bool registered = false;      // guarded by the registry's mutex

private:
  std::string name_; // guarded by mtx
};

/// The state of the calling thread when tandem::thread::start() started it; null in any other
/// thread. Unlike current_thread(), never registers the calling thread.
thread_state* current_started_state() noexcept;

/// A thread_state that carries its target: one allocation holds both.
template <class F>
class thread_state_with_target final : public thread_state {
public:
  template <class G>
  thread_state_with_target(thread_options opts, G&& fn)
      : thread_state(thread_kind::started, std::move(opts)), fn_(std::forward<G>(fn)) {}

  bool has_target() const noexcept override { return true; }

  void run_target(std::stop_token st) override {
    if (fn_) (*fn_)(std::move(st));
  }

  void drop_target() noexcept override { fn_.reset(); }

private:
  std::optional<F> fn_;
};

} // namespace detail
} // namespace tandem
