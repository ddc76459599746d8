// tandem::mp::process: Python's `multiprocessing.Process`, and the module-level functions of
// `multiprocessing` about processes (current_process, parent_process, active_children,
// cpu_count, set_start_method, get_start_method, get_all_start_methods, freeze_support).
//
// A process runs a target function with arguments in a child process:
//
//   void work(int n, std::string label);                 // a plain function (or a captureless
//                                                        // lambda): the child must find it again
//   int main(int argc, char** argv) {
//     tandem::runtime rt{argc, argv};                    // first thing in main: a spawn child
//                                                        // turns into the target here
//     tandem::mp::process p{work, 42, std::string{"x"}}; // arguments are converted and copied now
//     p.start();
//     p.join();
//     assert(p.exitcode() == 0);
//
//     tandem::mp::process d{{.name = "watcher", .daemon = true}, [](int period) { poll(period); },
//                           50};
//     d.start();
//   }                                                    // the runtime joins p-like children and
//                                                        // terminates daemon ones
//
// Start methods (set_start_method, or options::method for one process):
//   - forkserver (the default): the first forkserver start of a program starts a server, a new
//     execution of this program (/proc/self/exe, the same command line and environment) that
//     becomes the server while its static objects are initialized, before main runs and so
//     before any thread exists (unless a static object starts one). Each later start sends the
//     server the same record spawn writes (the target and its serialized arguments) with the
//     arguments' descriptors; the server forks, and the child finishes the program's
//     initialization, runs main up to freeze_support() and turns into the target there, exactly
//     as a spawn child does. Forking a small, single-threaded server is much cheaper than
//     executing the program again. Measured start() plus join() of a target that returns at once,
//     against posix_spawn(/bin/true) plus waitpid in the same run (Release build, Linux 6,
//     medians of 200): in a program that calls freeze_support() first, forkserver 0.7x, spawn
//     2.4x, fork 0.5x; in a program that constructs tandem::runtime first (every child builds
//     its actor system again before it reaches the target), forkserver 1.9x, spawn 4.6x. That is
//     why forkserver is the default. The first forkserver start also starts the server (about
//     one spawn). The server reaps its children and relays each exit status to the parent; the
//     parent's sentinel is a pidfd of the child that the server made before it could reap it.
//     The server ends with the program (it is killed when the program dies, and ends when the
//     program closes its end of their socket); if it dies anyway, the children it started keep
//     running but their exit codes are lost (exitcode() throws process_error), a start in
//     progress throws process_error, and the next start starts a new server. The child inherits
//     the environment and the current directory the program had when the server started, and its
//     OS parent (getppid()) is the server; parent_process() is still the program.
//   - spawn: the child is a new execution of this program (/proc/self/exe, the same command line
//     and environment) that turns into the target as soon as it calls freeze_support().
//     tandem::runtime's constructors call it, so a program that constructs the runtime first
//     thing in main is spawn-safe (Python's `if __name__ == "__main__"` guard). Everything main
//     does before that runs in the child too (forkserver children as well). The target is found
//     again by its offset in its module (the program or a shared library loaded at startup), so
//     it must be a plain function or a captureless, non-generic lambda (forkserver as well).
//     Arguments are serialized with detail::process_arg (by default the codec: any type with a
//     CAF `inspect` overload; types owning descriptors, like mp::connection, pass the descriptor
//     itself). The child starts with standard input, output and error and the descriptors of its
//     arguments; every other descriptor is closed.
//   - fork: the child is a fork() of the caller and calls the target on its copy of memory and
//     descriptors. fork() copies only the calling thread, so a lock held by another thread stays
//     locked in the child forever: start() refuses (usage_error naming the threads) when the
//     process has other threads, unless options::allow_threads is set.
//
// States: created (construction never starts it), started by start(), alive until the child
// exits, then finished once its exit status is collected (by join(), is_alive(), exitcode(),
// active_children() or shutdown; collecting also reaps the zombie), and closed after close().
// A process can be started once.
//
// Exit codes (exitcode()): 0 when the target returns (its return value is ignored), 1 when an
// exception escapes it ("Process NAME:" and the exception's type and what() are printed to
// stderr, as Python prints the traceback), n mod 256 after mp::exit(n), -N when the child was
// killed by signal N (-9 after kill(), -15 after terminate(), -11 for a segfault, -6 for
// abort()). Before the child ends the child runs tandem's exit handling: it joins its non-daemon
// threads and children and terminates its daemon children; static objects are not destroyed
// (the child ends with _exit, as Python's children do).
//
// Daemon processes: the flag is inherited from the current process (the main process is not a
// daemon). A daemon process cannot start children (usage_error). Daemon children are terminated
// at the runtime's shutdown (or, without a runtime, when main returns) and are killed (SIGKILL)
// when their parent process dies, also when it is killed (PR_SET_PDEATHSIG). The kernel ties that
// signal to the thread that created the child, so daemon children started by a thread other than
// the main thread are created by an internal thread that never ends; a daemon child started with
// the fork method from another thread is killed when that thread ends. A forkserver child's OS
// parent is the server, which dies with the program, so its daemon children die with the program
// too (and with the server).
//
// The mailbox: every child gets a duplex channel to its parent at start() (all start methods), with
// Pipe semantics. The parent sends with send(xs...) and receives the child's messages and replies
// with recv<T>(); the child uses tandem/mp/process_mailbox.hpp (mp::receive, mp::recv, mp::send).
// A message is a list of values: send(a, b) is received as recv<std::tuple<A, B>>() (or by a
// handler taking (A, B)), send(a) as recv<A>() (see tandem/mp/detail/process_actor_message.hpp).
// End of file: once the child has ended and every message it sent was read, recv() throws
// eof_error; the child's receive throws eof_error once the parent is gone.
//
//   void doubler() {
//     while (tandem::mp::receive([](int x) { return 2 * x; })) {}  // until the parent is gone
//   }
//   tandem::mp::process p{doubler};
//   p.start();
//   p.send(21);
//   assert(p.recv<int>() == 42);
//
// Processes as actors: p.actor() is a caf::actor for the child (see actor() below and
// tandem/mp/detail/process_actor.hpp); a monitor's down message carries the child's exit code
// (mp::exit_code_of).
//
// A `process` object is a handle (move-only). The child and its state live on when the handle is
// destroyed: the child keeps running, and the runtime (or the end of main) still joins or
// terminates it. current_process(), parent_process() and active_children() give handles too.
//
// Errors: usage_error for misuse (Python raises AssertionError there): starting twice, joining
// or testing a process that is not this process's child, joining before start, a daemon starting
// children, fork with other threads. value_error, as Python's ValueError, for any use after
// close() ("process object is closed") and close() while the child runs. tandem::error carrying the
// errno when the system refuses a process or a descriptor (EAGAIN, EMFILE).
//
// Thread-safety: every member may be called from any thread, except that close() must not race
// any other call on the same process. Process-safety: a handle is only useful in the process
// that created the child (in a fork child, the parent's handles answer usage_error).
#pragma once

#include <tandem/mp/connection.hpp>
#include <tandem/mp/detail/process_actor.hpp>
#include <tandem/mp/detail/process_actor_message.hpp>
#include <tandem/mp/detail/process_launch.hpp>
#include <tandem/timeout.hpp>

#include <caf/actor.hpp>

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::mp {

/// How a child process is created; see the file comment.
enum class start_method : std::uint8_t {
  /// fork(): the child runs on a copy of the parent (refused while other threads run).
  fork,
  /// A new execution of this program that turns into the target in freeze_support().
  spawn,
  /// A fork of a single-threaded server process that runs this program (the default).
  forkserver,
};

/// "fork", "spawn" or "forkserver" (Python's names).
std::string_view to_string(start_method m) noexcept;

/// How a process is created.
struct process_options {
  /// The process's name; empty gives "Process-N" ("Process-1:2" for the second child of the
  /// child Process-1), N counting the processes created by the current process from 1.
  std::string name{};
  /// Whether the process is a daemon; empty inherits the current process's flag.
  std::optional<bool> daemon{};
  /// The start method; empty uses get_start_method().
  std::optional<start_method> method{};
  /// fork only: fork even when other threads run (the child must then only use what no other
  /// thread could have been holding: no locks, no allocator state, only async-signal-safe calls
  /// in the strict reading of POSIX).
  bool allow_threads{false};
};

namespace detail {
class process_state;
struct process_access;
} // namespace detail

class process {
public:
  using options = process_options;

  // -- construction ---------------------------------------------------------------------------

  /// A process that will call `f(args...)` in the child. `f` is a function, a function pointer
  /// or a captureless, non-generic lambda; each argument is converted to (the decayed type of)
  /// the parameter it is passed to and kept until start(), which sends it to the child and then
  /// destroys the parent's copy (so a connection passed to the child is closed in the parent).
  /// Parameters may be values or references; the child's function gets the child's copies. With
  /// the spawn method every parameter type needs detail::process_arg (the codec by default).
  ///
  /// Throws std::bad_alloc, or what converting an argument throws.
  // clang-format off
  template <class F, class... Args>
    requires detail::process_target<F, Args...>
  explicit process(F&& f, Args&&... args)
      : process(options{}, std::forward<F>(f), std::forward<Args>(args)...) {}

  /// As above, with options: `process p{{.name = "w", .daemon = true}, f, args...}`.
  template <class F, class... Args>
    requires detail::process_target<F, Args...>
  process(options opts, F&& f, Args&&... args)
      : process(std::move(opts),
                std::make_unique<detail::process_launch_of<detail::target_pointer_t<F>>>(
                    +f, std::forward<Args>(args)...)) {}
  // clang-format on

  /// Moves the handle; `other` becomes an empty handle (every member except the destructor,
  /// assignment and close() then throws usage_error).
  process(process&& other) noexcept;
  process& operator=(process&& other) noexcept;
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  /// Releases the handle; a running child keeps running (see the file comment). Never throws.
  ~process();

  // -- control --------------------------------------------------------------------------------

  /// Starts the child and returns once it exists: pid() and sentinel() are valid, is_alive() is
  /// true until it exits. The child may not have reached the target yet. Also collects the
  /// exit status of children that have finished (Python's _cleanup), so forgotten children do
  /// not stay zombies.
  ///
  /// Throws usage_error when the process was started before ("cannot start a process twice"),
  /// is closed or an empty handle, is current_process() or parent_process(), when the current
  /// process is a daemon ("daemonic processes are not allowed to have children"), and for the
  /// fork method while other threads run (the message names them) unless allow_threads is set;
  /// tandem::error with the errno when the system refuses (the process can then be started
  /// again); what saving an argument throws (spawn, forkserver); process_error when the
  /// forkserver died while starting the child (the next start starts a new server).
  ///
  /// Lifetime: the first start() of a program installs the exit handling (an atexit handler that
  /// joins non-daemon children and terminates daemon ones) unless a runtime does it first.
  void start();

  /// Blocks until the child has exited or `t` expires; returns true when it has exited and its
  /// exit status is collected (exitcode() is set). Many threads may join the same process.
  /// For parent_process(), waits for the parent to end (and exitcode() stays empty).
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  ///
  /// Throws usage_error before start() ("can only join a started process"), for
  /// current_process() ("cannot join the current process"), for a process this process did not
  /// start ("can only join a child process"), after close() and for an empty handle;
  /// process_error when a forkserver child's exit status is not relayed in time (see exitcode()).
  bool join(timeout t = forever);

  /// As join(t), and returns false promptly once a stop is requested on `st` (the child keeps
  /// running).
  ///
  ///   std::jthread watcher{[&](std::stop_token st) {
  ///     if (p.join(st)) report(p.exitcode());
  ///   }};
  bool join(std::stop_token st, timeout t = forever);

  /// Sends SIGTERM to the child (Python's terminate). Does nothing once its exit status is
  /// collected. The child's exit code is then -15 unless it handles the signal.
  ///
  /// Throws usage_error before start(), for a process this process did not start, after close()
  /// and for an empty handle.
  void terminate();

  /// Sends SIGKILL to the child (Python's kill); exit code -9. As terminate() otherwise.
  void kill();

  /// Releases the process's resources (the sentinel descriptor, the parent's end of the mailbox);
  /// afterwards every member but
  /// close() and the destructor throws value_error ("process object is closed"). A second close()
  /// does nothing. A process that was never started can be closed.
  ///
  /// Throws value_error while the child runs ("Cannot close a process while it is still
  /// running. You should first call join() or terminate()."); usage_error for current_process()
  /// and parent_process() handles.
  void close();

  // -- the mailbox ----------------------------------------------------------------------------

  /// Sends the message of the values `xs...` to the child (its mp::receive or mp::recv; see the
  /// file comment for the types). Blocks while the channel is full. Throws usage_error before
  /// start(), after close(), for a process this process did not start; value_error when a value
  /// cannot be encoded (nothing is sent); tandem::error with EPIPE when the child has ended.
  /// Thread-safe: concurrent sends are serialized.
  ///
  ///   p.send(std::string{"resize"}, 640, 480);   // the child's handler takes (string, int, int)
  template <class... Ts>
  void send(const Ts&... xs) {
    std::vector<std::byte> bytes;
    detail::encode_message(bytes, xs...);
    if constexpr (sizeof...(Ts) == 1 && (detail::is_std_tuple<Ts> && ...))
      (detail::reply_registration<Ts>::run(), ...);
    else
      detail::register_reply_types<detail::wire_type_t<Ts>...>();
    send_message(bytes);
  }

  /// Receives the next message the child sent (mp::send, or a receive handler's reply to send());
  /// blocks until one arrives. Throws eof_error when the child has ended and every message it
  /// sent was read; bad_message_error when the message holds other types (it is consumed);
  /// usage_error as send(). Thread-safe: concurrent receives are serialized.
  template <class T>
  T recv() {
    detail::reply_registration<T>::run();
    return detail::decode_message<T>(recv_message(forever).value());
  }

  /// As recv<T>(), but waits at most `t` for a message to begin: std::nullopt when none did.
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  template <class T>
  std::optional<T> recv(timeout t) {
    detail::reply_registration<T>::run();
    auto bytes = recv_message(t);
    if (!bytes) return std::nullopt;
    return detail::decode_message<T>(*bytes);
  }

  /// As recv<T>(t), and returns std::nullopt promptly once a stop is requested on `st`.
  template <class T>
  std::optional<T> recv(std::stop_token st, timeout t = forever) {
    detail::reply_registration<T>::run();
    auto bytes = recv_message(std::move(st), t);
    if (!bytes) return std::nullopt;
    return detail::decode_message<T>(*bytes);
  }

  /// True when recv() would not block: a message is ready or the child has ended (end of file).
  /// Waits up to `t` (default: do not wait). Throws usage_error as send().
  bool poll(timeout t = std::chrono::seconds{0});

  /// The parent's end of the mailbox, for mp::wait and fileno(). Not synchronized with send(),
  /// recv() and poll(); receiving on it directly is receiving with recv_bytes(). Throws
  /// usage_error as send(). The reference stays valid until close().
  mp::connection& connection();

  /// The child as a CAF actor in the actor system of tandem::runtime::current(), made on first
  /// use (the same actor every time): CAF actors send it messages and requests, which the child
  /// handles with mp::receive (a handler's return value is the response), and monitor or link to
  /// it: when the child ends, the actor quits with an exit reason carrying the exit code (read it
  /// with mp::exit_code_of: 0, n after mp::exit(n), -9 after kill()). See
  /// tandem/mp/detail/process_actor.hpp for the element types that travel and for replies.
  /// Once the actor has quit, actor() may return a new handle that has quit with the same exit
  /// reason (a monitor gets its down message at once). Throws usage_error as send();
  /// std::bad_alloc; tandem::error when the actor's polling thread cannot start.
  ///
  ///   caf::scoped_actor self{rt.system()};
  ///   self->request(p.actor(), 5s, 20).receive([](int doubled) { ... }, [](caf::error&) {});
  caf::actor actor();

  // -- observers ------------------------------------------------------------------------------

  /// The process's name; see process_options::name. "MainProcess" for the main process.
  std::string name() const;

  /// Renames the process (allowed at any time; the child keeps the name it started with).
  void name(std::string new_name);

  /// Whether the process is a daemon; see the file comment.
  bool daemon() const;

  /// Sets the daemon flag. Throws usage_error once the process has been started ("process has
  /// already started").
  void set_daemon(bool daemonic);

  /// The same as set_daemon(daemonic), spelled like name(new_name) (Python: `p.daemon = True`).
  void daemon(bool daemonic) { set_daemon(daemonic); }

  /// The child's process id once started (kept after it exits), getpid() for current_process(),
  /// the parent's id for parent_process(); empty before start().
  std::optional<pid_t> pid() const;

  /// Empty until the child's exit status is collected (the call collects it when the child has
  /// exited); then as described in the file comment. Always empty for current_process() and
  /// parent_process().
  /// With forkserver, a status the server has not relayed yet when the child has exited is waited
  /// for (at most 10 s).
  ///
  /// Throws usage_error after close(); process_error when something else in the program
  /// collected the child's exit status (waitpid(-1), or SIGCHLD set to SIG_IGN), or when the
  /// forkserver that started the child died before relaying it (or did not within 10 s).
  std::optional<int> exitcode() const;

  /// True from start() until the child has exited (collects its exit status then); always true
  /// for current_process(); for parent_process(), true until the parent ends. False before
  /// start(). Throws usage_error after close() and for a process this process did not start;
  /// process_error as join().
  bool is_alive() const;

  /// A descriptor that becomes readable (poll, epoll, select, mp::wait) when the child exits: a
  /// pidfd, owned by the process object (closed by close()). For parent_process(), readable when
  /// the parent ends. Throws usage_error before start() ("process not started"), for
  /// current_process() and after close().
  int sentinel() const;

  /// The start method this process uses (options::method, or the default when it was created).
  start_method method() const;

  /// True when both handles name the same process (two empty handles are equal).
  friend bool operator==(const process& a, const process& b) noexcept {
    return a.state_ == b.state_;
  }

private:
  friend struct detail::process_access;

  process(options opts, std::unique_ptr<detail::process_launch> launch);
  explicit process(std::shared_ptr<detail::process_state> state) noexcept;

  detail::process_state& checked(const char* what) const;
  bool join_impl(const timeout& t, const std::stop_token* st);
  detail::process_state& mailbox_checked(const char* what) const;
  void send_message(std::span<const std::byte> bytes);
  std::optional<std::vector<std::byte>> recv_message(timeout t);
  std::optional<std::vector<std::byte>> recv_message(std::stop_token st, timeout t);

  std::shared_ptr<detail::process_state> state_;
};

// -- module-level functions ---------------------------------------------------------------------

/// When this program runs as a spawn or forkserver child, runs the target and ends the process
/// (never returns); otherwise returns at once. tandem::runtime's constructors call it; a program
/// without a runtime calls it first thing in main. Calling it again is harmless. (A forkserver
/// server never reaches main: it is recognized while the program's static objects are built.)
void freeze_support();

/// What mp::exit throws to end a process target; let it pass (catch it only to rethrow).
struct process_exit {
  int code;
};

/// Python's sys.exit(code) in a child: ends the process target with exit code `code` (mod 256),
/// unwinding the target's stack (destructors run). Throws process_exit when called in a process
/// target's thread; elsewhere (the main program, other threads) flushes the C streams and calls
/// std::exit(code).
[[noreturn]] void exit(int code = 0);

/// The current process: "MainProcess" in the main program, the process's handle in a child
/// (name, daemon, pid, is_alive true). The reference stays valid for the life of the process.
process& current_process();

/// The parent of this process when it is a child tandem started: its name and pid; is_alive()
/// turns false and sentinel() becomes readable when the parent ends. Empty in the main process.
std::optional<process> parent_process();

/// Handles of this process's children that are alive; collects the exit status of those that
/// have finished (Python's active_children).
std::vector<process> active_children();

/// The number of CPUs this process may use: the CPUs in its affinity mask, limited by the CPU
/// quota of its cgroup (cgroup v2 cpu.max, rounded up), at least 1 (Python 3.13's
/// process_cpu_count, with the quota as the issue of container limits asks).
std::size_t cpu_count() noexcept;

/// Sets the default start method for processes created from now on. Throws usage_error when it
/// was already set or used ("context has already been set") unless `force`.
void set_start_method(start_method m, bool force = false);

/// The default start method (forkserver unless set; see the file comment for why); fixes it, as
/// Python does.
start_method get_start_method();

/// Every start method this platform offers, the default first.
std::vector<start_method> get_all_start_methods();

} // namespace tandem::mp
