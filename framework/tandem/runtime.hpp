// tandem::runtime: the CAF actor system of a tandem program, and its orderly shutdown.
//
// A program constructs one runtime at the top of `main`. It owns the caf::actor_system (with
// CAF's command-line options and caf-application.ini parsed, and tandem's error category
// registered) that tandem's thread and process actors live in, and at its end it does what
// Python does at interpreter exit: it joins every non-daemon thread and sends daemon threads a
// stop request, then joins every non-daemon child process and terminates daemon children.
//
// Process children: the constructors call mp::freeze_support() once the runtime is usable, so in a
// child started with the spawn or forkserver method (tandem/mp/process.hpp) constructing the
// runtime runs the process's target and ends the process there; construct the runtime first
// thing in main. The child's runtime has the program's configuration (command line included) and
// builds its actor system only when the target first uses it.
//
//   int main(int argc, char** argv) {
//     tandem::runtime rt{argc, argv};            // e.g. --scheduler.max-threads=4
//     tandem::thread worker{[] { ... }};
//     worker.start();
//     caf::scoped_actor self{rt.system()};
//     ...
//   }                                            // joins worker, then stops the actor system
//
// States: running (from construction), then shut down (after shutdown() or in the destructor).
// The actor system lives until the destructor, even after shutdown().
//
// The current runtime: runtime::current() returns the runtime the program constructed, or, for
// programs that never construct one, a default runtime created on first use (default CAF
// configuration, no command line). The default runtime is never destroyed: its actor system
// lives until the process ends, so daemon threads can always reach it. Without a runtime the
// non-daemon threads are still joined when `main` returns (or exit() is called).
//
// At most one runtime constructed by the program exists at a time.
//
// Thread-safety: system(), config() and current() may be called from any thread. shutdown() may
// be called from any thread, also more than once. The destructor must not race with any other
// use of the runtime.
//
// Lifetime hazards: CAF's actor_system destructor waits for every actor to finish, so an actor
// that never quits makes the runtime's destructor hang (unless a shutdown() with a deadline
// failed; see there). A reference from current() dangles once that runtime is destroyed.
// Threads still running when the runtime is destroyed (daemon threads, or threads a shutdown()
// gave up on) must no longer touch actors: their thread actors and the CAF workers they route
// through belong to the destroyed system. shutdown() requests their stop tokens on the calling
// thread, so std::stop_callbacks registered on those tokens must not block, or shutdown()
// cannot keep its deadline.
#pragma once

#include <tandem/timeout.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tandem {

class runtime {
public:
  // -- construction ---------------------------------------------------------------------------

  /// A runtime with CAF's default configuration: no command line, no configuration file.
  ///
  /// Throws usage_error when the program already has a runtime; what caf::actor_system throws.
  runtime();

  /// A runtime configured by the command line: CAF's options (--scheduler.max-threads=4,
  /// --config-file=FILE, --help, ...) and the configuration file (caf-application.ini in the
  /// working directory unless --config-file names another). Arguments that are not options are
  /// kept in remainder(). With --help, CAF prints its help text and help_printed() is true: the
  /// program should then return from main.
  ///
  /// Throws value_error for an unknown option or a malformed value (the message names it);
  /// usage_error when the program already has a runtime.
  runtime(int argc, char** argv);

  /// A runtime with a configuration the program built (a subclass of caf::actor_system_config
  /// with its own options and message types, say). When `argc`/`argv` are given they are parsed
  /// into it as above; otherwise it is used as it is.
  explicit runtime(std::unique_ptr<caf::actor_system_config> cfg, int argc = 0,
                   char** argv = nullptr);

  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Shuts down (as shutdown(forever), unless shutdown() was called before), then destroys the
  /// actor system, which waits for its actors, unless a shutdown() returned false.
  ~runtime();

  // -- access ---------------------------------------------------------------------------------

  /// The actor system. In a child process started with the spawn or forkserver method, the
  /// runtime that turned into the process's target builds its actor system on the first call
  /// (children that never use actors do not pay for one); a failure to build it then ends the
  /// process (std::terminate), since the parent already built one from the same configuration.
  caf::actor_system& system() noexcept {
    auto* s = sys_.load(std::memory_order_acquire);
    return s != nullptr ? *s : build_lazily();
  }

  /// The configuration the actor system was built from.
  const caf::actor_system_config& config() const noexcept { return *cfg_; }

  /// The runtime the program constructed, or else the default runtime (created now if needed).
  /// Throws what creating the default runtime throws (only on first use).
  static runtime& current();

  // -- shutdown -------------------------------------------------------------------------------

  /// Joins every non-daemon thread tandem started (also threads started by other threads, and
  /// threads whose handle was destroyed; not the calling thread) until `deadline`; then sends
  /// every daemon thread a stop request and does not wait for it. Then joins this process's
  /// non-daemon child processes (mp::process) until `deadline`, terminates (SIGTERM) the daemon
  /// children and those still running, and kills (SIGKILL) those that have not ended a short
  /// grace period later (at most 1 s, within the deadline unless it has passed). Returns whether
  /// every non-daemon thread and child was joined. If not, the threads still running get a stop
  /// request too, and the destructor no longer waits for actors, so the program can end by its
  /// deadline. Always returns by the deadline.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  bool shutdown(timeout deadline = forever);

  // -- observers ------------------------------------------------------------------------------

  /// True when the command line asked for CAF's help text (it has been printed).
  bool help_printed() const noexcept { return cfg_->cli_helptext_printed; }

  /// Command-line arguments that are not CAF options, in order.
  const std::vector<std::string>& remainder() const noexcept { return cfg_->remainder; }

private:
  struct default_tag {};
  explicit runtime(default_tag);

  friend class runtime_default_holder;

  void parse(int argc, char** argv);
  void build();
  caf::actor_system& build_lazily() noexcept;

  std::unique_ptr<caf::actor_system_config> cfg_;
  std::unique_ptr<caf::actor_system> system_;
  /// Stays valid while system_ is destroyed (system() is then still callable from actors).
  std::atomic<caf::actor_system*> sys_{nullptr};
  std::once_flag built_;
  bool is_default_ = false;
  std::atomic<bool> shut_down_{false};
  std::atomic<bool> all_joined_{true};
};

} // namespace tandem
