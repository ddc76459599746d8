// tandem::mp::process: children started by fork, by spawn (posix_spawn of /proc/self/exe) or by
// a forkserver, the registry of children, the spawn and forkserver children's bootstrap
// (freeze_support) and the forkserver itself.
//
// Choices:
// - Every child has a pidfd (pidfd_open right after it is created: until this process collects
//   its status the pid cannot be reused). The pidfd is the sentinel, join() polls it, signals go
//   through pidfd_send_signal and the status is collected with waitid(P_PIDFD), so nothing ever
//   signals or reaps a recycled pid.
// - A spawn child gets its bootstrap record in a memfd at descriptor 3, its arguments'
//   descriptors at 4, 5, ..., this process's pidfd (its parent_process() sentinel) after them,
//   then the child's ends of its mailbox (the plain channel, the actor's channel);
//   every other descriptor is closed (posix_spawn file actions, closefrom). The environment
//   variable TANDEM_MP_SPAWN marks the child; freeze_support() removes it, so a program the
//   child executes later does not mistake itself for a spawn child.
// - The target is named by its offset from the load address of its module (dl_iterate_phdr),
//   together with the offset of spawn_entry<F>, which decodes the arguments with the target's
//   own parameter types: ASLR-safe, and no registry of target names.
// - PR_SET_PDEATHSIG fires when the thread that created the child ends, so daemon spawn children
//   started by other threads than the main thread, and the forkserver, are created by an
//   internal launcher thread that never ends (or by the main thread).
// - The forkserver is a posix_spawn of /proc/self/exe marked by TANDEM_MP_FORKSERVER, with its
//   control socket (SOCK_SEQPACKET: one request or reply per message) at descriptor 3. A static
//   object of this file recognizes it, so the server loop runs during static initialization:
//   before main, so before tandem::runtime starts CAF's threads, and forks stay safe. The forked
//   child returns from the loop with its bootstrap record parsed and waiting; static
//   initialization and main go on as in a spawn child, until freeze_support() runs the target.
// - A request is the spawn bootstrap record (inline, or in a memfd when large) with the
//   arguments' descriptors and this process's pidfd (SCM_RIGHTS). The reply is the pid, a pidfd
//   the server opened right after fork (before it can reap the child, so it names the child),
//   and one end of a socketpair on which the server writes the exit status when it has reaped
//   the child. The server polls its children's pidfds, so it needs no SIGCHLD handler.
// - The registry of children, the current process's identity and the start method are global
//   state of this process, built on first use and never destroyed (children may be collected
//   while static objects are destroyed).

#include "internal/no_destroy.hpp"
#include <tandem/detail/futex.hpp>
#include <tandem/detail/thread_registry.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/detail/process_actor.hpp>
#include <tandem/mp/detail/process_registry.hpp>
#include <tandem/mp/pipe.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/thread.hpp>

#include <caf/actor_cast.hpp>
#include <caf/exit_reason.hpp>

#include <cxxabi.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <new>
#include <optional>
#include <sstream>
#include <stop_token>
#include <thread>
#include <typeinfo>
#include <vector>

extern char** environ; // NOLINT: POSIX declares it nowhere else

namespace tandem::mp {

namespace detail {

enum class process_kind { child, current, parent };

class process_state;

// Forgets the parent's ends of a process's mailbox (see parent_ends below).
void forget_parent_ends(process_state& s) noexcept;

class process_state {
public:
  process_state(process_kind k, std::string name, bool daemon, start_method m)
      : kind(k), name_(std::move(name)), daemon_(daemon), method(m) {}
  process_state(const process_state&) = delete;
  process_state& operator=(const process_state&) = delete;
  ~process_state() {
    forget_parent_ends(*this);
    if (pidfd >= 0) ::close(pidfd);
    if (status_fd >= 0) ::close(status_fd);
  }

  enum phase_t : int { initial, started, closed };

  const process_kind kind;
  mutable std::mutex mtx;
  std::string name_; // guarded by mtx
  bool daemon_;      // guarded by mtx
  start_method method;
  bool allow_threads = false;
  std::string path; // "1:2" for Process-1:2: the prefix of its children's names
  pid_t creator = ::getpid();
  std::unique_ptr<process_launch> launch; // guarded by mtx; until start()
  phase_t phase = initial;                // guarded by mtx
  pid_t pid = 0;                          // set at start
  int pidfd = -1;                         // set at start, closed by close()
  int status_fd = -1;                     // forkserver: where the server relays the status
  std::optional<int> code;                // guarded by mtx
  bool lost = false;                      // guarded by mtx: status collected elsewhere
  std::string lost_reason;                // guarded by mtx: why, for exitcode()'s message
  std::atomic<bool> registered{false};
  // The mailbox (process_mailbox.hpp): the parent's ends, made at start, closed by close().
  connection box;      // guarded by box_mtx for receiving, send_mtx for sending
  connection requests; // the actor's channel, until the actor takes it
  std::mutex send_mtx;
  std::mutex box_mtx;
  std::mutex actor_mtx;
  std::shared_ptr<process_actor_link> actor_link; // guarded by actor_mtx; made by actor()

  std::string name() const {
    std::lock_guard guard{mtx};
    return name_;
  }
  bool daemon() const {
    std::lock_guard guard{mtx};
    return daemon_;
  }
};

struct process_access {
  static process make(std::shared_ptr<process_state> s) noexcept { return process{std::move(s)}; }
  static const std::shared_ptr<process_state>& state(const process& p) noexcept { return p.state_; }
};

} // namespace detail

namespace {

using detail::process_access;
using detail::process_kind;
using detail::process_state;

constexpr const char* spawn_variable = "TANDEM_MP_SPAWN";
constexpr const char* forkserver_variable = "TANDEM_MP_FORKSERVER";
constexpr int record_fd = 3;
constexpr int control_fd = 3;                       // the forkserver's control socket
constexpr std::uint32_t request_magic = 0x746d7066; // "tmpf"
// Records up to this size travel inside the request; larger ones in a memfd.
constexpr std::size_t inline_record_limit = std::size_t{48} * 1024;
// SCM_MAX_FD: the most descriptors one message carries.
constexpr std::size_t max_passed_fds = 253;
// How long a parent waits for the server to relay the status of a child that has exited.
constexpr auto relay_grace = std::chrono::seconds{10};
constexpr std::uint32_t record_magic = 0x746d7031; // "tmp1"
// waitid's P_PIDFD (Linux 5.4); glibc 2.36 does not name it.
constexpr auto p_pidfd = static_cast<idtype_t>(3);

// glibc 2.36's <sys/pidfd.h> lacks C linkage for C++, so the system calls are made directly.
int pidfd_open(pid_t pid, unsigned flags) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}
int pidfd_send_signal(int pidfd, int sig) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0u));
}

using internal::no_destroy;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw error(std::error_code(err, std::system_category()), what);
}

void write_stderr(const std::string& text) noexcept {
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> name{
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free};
  return status == 0 && name ? std::string{name.get()} : std::string{mangled};
}

std::string describe(const std::exception_ptr& exc) {
  try {
    std::rethrow_exception(exc);
  } catch (const std::exception& e) {
    return demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    return type != nullptr ? demangle(type->name()) : std::string{"unknown exception"};
  }
}

bool on_main_thread() noexcept {
  return ::syscall(SYS_gettid) == ::getpid();
}

// -- the current process --------------------------------------------------------------------------

struct identity {
  std::mutex mtx;
  // "" in the main process, "1" in Process-1, "1:2" in its second child.
  std::string path;                      // guarded by mtx
  std::uint64_t counter = 0;             // guarded by mtx
  std::optional<start_method> method;    // guarded by mtx: set or fixed
  bool method_set = false;               // guarded by mtx
  int self_pidfd = -1;                   // guarded by mtx: this process's pidfd, for children
  std::shared_ptr<process_state> parent; // guarded by mtx; null in the main process
  process current;

  identity()
      : current(process_access::make(std::make_shared<process_state>(
            process_kind::current, "MainProcess", false, start_method::spawn))) {}

  process_state& current_state() { return *process_access::state(current); }
};

identity& the_identity() {
  static no_destroy<identity> id;
  return id.get();
}

// Set while a process target runs, in its thread: mp::exit throws there.
thread_local bool in_target = false;

// -- the registry of children ---------------------------------------------------------------------

struct registry {
  std::mutex mtx;
  std::vector<std::shared_ptr<process_state>> children; // guarded by mtx: started, not collected
  std::once_flag exit_handler_installed;
  // The parent's ends of every child's mailbox that are open in this process: a fork child
  // points them at /dev/null (see after_fork_in_child).
  std::vector<int> parent_ends; // guarded by mtx
};

registry& the_registry();

// This process's connection to its forkserver.
struct forkserver_client {
  std::mutex mtx;
  int ctl = -1;   // guarded by mtx: the control socket; -1 when no server runs
  pid_t pid = 0;  // guarded by mtx
  int pidfd = -1; // guarded by mtx: the server's pidfd (it is this process's child)
};

forkserver_client& the_forkserver() {
  static no_destroy<forkserver_client> fs;
  return fs.get();
}

// The launcher thread of on_launcher(): created on first use, per process.
struct launcher {
  std::mutex mtx;
  std::condition_variable cv;
  std::deque<std::function<void()>> jobs; // guarded by mtx
  launcher() {
    std::thread{[this] {
      pthread_setname_np(pthread_self(), "tandem-launch");
      for (;;) {
        std::function<void()> job;
        {
          std::unique_lock lk{mtx};
          cv.wait(lk, [this] { return !jobs.empty(); });
          job = std::move(jobs.front());
          jobs.pop_front();
        }
        job();
      }
    }}.detach();
  }
};

struct launcher_slot {
  std::mutex mtx;
  launcher* current = nullptr; // guarded by mtx; never destroyed (its thread never ends)
};

launcher_slot& the_launcher_slot() {
  static no_destroy<launcher_slot> slot;
  return slot.get();
}

void before_fork() noexcept {
  the_identity().mtx.lock();
  the_registry().mtx.lock();
  the_forkserver().mtx.lock();
  the_launcher_slot().mtx.lock();
}
void after_fork_in_parent() noexcept {
  the_launcher_slot().mtx.unlock();
  the_forkserver().mtx.unlock();
  the_registry().mtx.unlock();
  the_identity().mtx.unlock();
}
// The parent's children are not the child's: forget them (handles the child still holds answer
// usage_error, since their creator is another process). The parent's forkserver and launcher
// thread are not the child's either: the child starts its own when it needs them (the old
// launcher is left alone: its thread does not exist here, and its lock may be held).
void after_fork_in_child() noexcept {
  auto& slot = the_launcher_slot();
  slot.current = nullptr;
  slot.mtx.unlock();
  auto& fs = the_forkserver();
  if (fs.ctl >= 0) ::close(fs.ctl);
  if (fs.pidfd >= 0) ::close(fs.pidfd);
  fs.ctl = -1;
  fs.pidfd = -1;
  fs.pid = 0;
  fs.mtx.unlock();
  auto& reg = the_registry();
  reg.children.clear();
  // The parent's ends of its children's mailboxes: a copy here would keep those children from
  // seeing end of file when the parent ends. The descriptors stay allocated (objects of this
  // copy of memory own them and will close them) but no longer refer to the sockets. open and
  // dup3 are async-signal-safe.
  for (int fd : reg.parent_ends) {
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
      ::dup3(null, fd, O_CLOEXEC);
      ::close(null);
    }
  }
  reg.mtx.unlock();
  the_identity().mtx.unlock();
}

registry& the_registry() {
  static no_destroy<registry> reg;
  static const bool installed = [] {
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
    return true;
  }();
  (void)installed;
  return reg.get();
}

void remember_parent_ends(process_state& s) {
  auto& reg = the_registry();
  std::lock_guard guard{reg.mtx};
  reg.parent_ends.push_back(s.box.fileno());
  reg.parent_ends.push_back(s.requests.fileno());
}

void unregister(process_state& s) {
  if (!s.registered.exchange(false)) return;
  auto& reg = the_registry();
  std::lock_guard guard{reg.mtx};
  auto it = std::find_if(reg.children.begin(), reg.children.end(),
                         [&](const auto& p) { return p.get() == &s; });
  if (it != reg.children.end()) reg.children.erase(it);
}

} // namespace

void detail::forget_parent_end(int fd) noexcept {
  auto& reg = the_registry();
  std::lock_guard guard{reg.mtx};
  std::erase(reg.parent_ends, fd);
}

void detail::forget_parent_ends(process_state& s) noexcept {
  int fds[2] = {s.box.closed() ? -1 : s.box.fileno(),
                s.requests.closed() ? -1 : s.requests.fileno()};
  if (fds[0] < 0 && fds[1] < 0) return;
  auto& reg = the_registry();
  std::lock_guard guard{reg.mtx};
  std::erase_if(reg.parent_ends, [&](int fd) { return fd == fds[0] || fd == fds[1]; });
}

namespace {

// Polls `fd` for input for at most `ms` milliseconds (retrying after signals, not extending the
// wait); returns whether it is readable (or at EOF, or in error).
bool poll_in(int fd, int ms) {
  pollfd pfd{fd, POLLIN, 0};
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds{ms};
  for (;;) {
    int rc = ::poll(&pfd, 1, ms);
    if (rc >= 0) return rc > 0;
    if (errno != EINTR) throw_errno(errno, "poll on a process descriptor failed");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    ms = static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
  }
}

// A forkserver child's status: once its pidfd is readable (it has exited), the server reaps it
// and writes the status on status_fd; it may not have yet, so wait for it a little.
bool collect_relayed(process_state& s) {
  // requires s.mtx
  if (!poll_in(s.pidfd, 0)) return false;
  if (!poll_in(s.status_fd, static_cast<int>(std::chrono::milliseconds{relay_grace}.count())))
    throw process_error{"process " + s.name_ + " has exited but the forkserver that started it " +
                        "has not relayed its exit status within 10 s: the server is stuck; try "
                        "again later"};
  std::int32_t code = 0;
  ssize_t n;
  do {
    n = ::recv(s.status_fd, &code, sizeof code, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof code)) {
    s.code = code;
  } else {
    s.lost = true;
    s.lost_reason = "the forkserver that started " + s.name_ +
                    " ended before it relayed the exit status: its exit code is unknown (later "
                    "starts use a new server)";
  }
  ::close(s.status_fd);
  s.status_fd = -1;
  return true;
}

// Collects the child's exit status if it has exited. Returns whether it has.
bool collect(process_state& s) {
  {
    std::lock_guard guard{s.mtx};
    if (s.code || s.lost) return true;
    if (s.pidfd < 0) return false;
    if (s.status_fd >= 0) {
      if (!collect_relayed(s)) return false;
      // collected: unregister below
    } else {
      siginfo_t info{};
      int rc;
      do {
        rc = ::waitid(p_pidfd, static_cast<id_t>(s.pidfd), &info, WEXITED | WNOHANG);
      } while (rc < 0 && errno == EINTR);
      if (rc < 0) {
        if (errno != ECHILD) throw_errno(errno, "cannot collect the exit status of " + s.name_);
        // Someone else collected it: the child is gone, its status unknown.
        s.lost = true;
        s.lost_reason = "the exit status of " + s.name_ +
                        " was collected by something else in this program (waitpid(-1), or "
                        "SIGCHLD set to SIG_IGN): its exit code is unknown";
      } else if (info.si_pid == 0) {
        return false;
      } else if (info.si_code == CLD_EXITED) {
        s.code = info.si_status;
      } else {
        s.code = -info.si_status;
      }
    }
  }
  unregister(s);
  return true;
}

bool collect_noexcept(process_state& s) noexcept {
  try {
    return collect(s);
  } catch (...) {
    return true;
  }
}

// Waits until `fd` is readable or `t` expires, or (false) until a stop is requested on `st`.
bool wait_readable(int fd, const timeout& t, const std::stop_token* st = nullptr) {
  pollfd pfd{fd, POLLIN, 0};
  int rc = st != nullptr ? tandem::detail::ppoll_until(&pfd, 1, t, *st)
                         : tandem::detail::ppoll_until(&pfd, 1, t);
  if (rc < 0) throw_errno(errno, "poll on a process sentinel failed");
  return rc > 0;
}

std::vector<std::shared_ptr<process_state>> snapshot_children() {
  auto& reg = the_registry();
  std::lock_guard guard{reg.mtx};
  std::vector<std::shared_ptr<process_state>> out;
  auto self = ::getpid();
  for (auto& c : reg.children)
    if (c->creator == self) out.push_back(c);
  return out;
}

// Python's _cleanup: collects the children that have finished.
void collect_finished() {
  for (auto& c : snapshot_children()) collect_noexcept(*c);
}

void send_signal(process_state& s, int sig) {
  std::lock_guard guard{s.mtx};
  if (s.code || s.lost || s.pidfd < 0) return;
  if (pidfd_send_signal(s.pidfd, sig) < 0 && errno != ESRCH)
    throw_errno(errno, "cannot send signal " + std::to_string(sig) + " to process " + s.name_);
}

bool children_at_exit_impl(const timeout& t) noexcept {
  bool all = true;
  std::vector<std::shared_ptr<process_state>> rest;
  for (auto& c : snapshot_children()) {
    if (c->daemon()) {
      rest.push_back(c);
      continue;
    }
    bool done = false;
    try {
      done = wait_readable(c->pidfd, t);
    } catch (...) {
    }
    if (done)
      collect_noexcept(*c);
    else {
      all = false;
      rest.push_back(c);
    }
  }
  if (rest.empty()) return all;
  for (auto& c : rest) try {
      send_signal(*c, SIGTERM);
    } catch (...) {
    }
  auto grace_end = std::chrono::steady_clock::now() + std::chrono::seconds{1};
  timeout grace = t.expired() || t.deadline() > grace_end ? timeout{grace_end} : t;
  if (t.expired()) grace = timeout{std::chrono::steady_clock::now()};
  for (auto& c : rest) {
    bool done = false;
    try {
      done = wait_readable(c->pidfd, grace);
    } catch (...) {
    }
    if (!done) try {
        send_signal(*c, SIGKILL);
      } catch (...) {
      }
  }
  // A killed process ends at once unless it sits in an uninterruptible sleep: wait a little.
  timeout last{std::chrono::seconds{1}};
  for (auto& c : rest) {
    try {
      if (wait_readable(c->pidfd, last)) collect_noexcept(*c);
    } catch (...) {
    }
  }
  return all;
}

void children_at_exit() noexcept {
  children_at_exit_impl(forever);
}

// Ends a child after its target: tandem's exit handling, then _exit (never returns into main).
[[noreturn]] void finish_child(int code) noexcept {
  tandem::detail::shutdown_threads(forever);
  children_at_exit_impl(forever);
  try {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
  } catch (...) {
  }
  std::fflush(nullptr);
  ::_exit(code);
}

// Runs the target and returns the exit code.
template <class Body>
int run_target(const std::string& name, Body&& body) {
  in_target = true;
  int code = 0;
  try {
    body();
  } catch (const process_exit& e) {
    code = e.code & 0xff;
  } catch (abi::__forced_unwind&) {
    throw; // pthread_exit in the target: the thread ends as it asked
  } catch (...) {
    try {
      write_stderr("Process " + name + ":\n" + describe(std::current_exception()) + "\n");
    } catch (...) {
    }
    code = 1;
  }
  in_target = false;
  return code;
}

// Makes a daemon child die with its parent, and closes the race with a parent that died before
// the request was made.
void die_with_parent(pid_t parent) noexcept {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::raise(SIGKILL);
}

// This process's pidfd (for its children's parent_process()), made on first use.
int self_pidfd(identity& id) {
  // requires id.mtx
  if (id.self_pidfd < 0) {
    int fd = pidfd_open(::getpid(), 0);
    if (fd < 0) throw_errno(errno, "cannot start a process: pidfd_open of this process failed");
    id.self_pidfd = fd; // pidfd_open sets close-on-exec
  }
  return id.self_pidfd;
}

// The child becomes `name`: identity, parent, no children.
void become_child(identity& id, const std::string& name, bool daemon, const std::string& path,
                  std::shared_ptr<process_state> parent) {
  auto& cur = id.current_state();
  {
    std::lock_guard guard{cur.mtx};
    cur.name_ = name;
    cur.daemon_ = daemon;
  }
  id.path = path;
  id.counter = 0;
  id.parent = std::move(parent);
  id.self_pidfd = -1;
}

// -- spawn ----------------------------------------------------------------------------------------

class record_writer {
public:
  template <class T>
  void put(const T& x) {
    static_assert(std::is_trivially_copyable_v<T>);
    auto old = bytes.size();
    bytes.resize(old + sizeof(T));
    std::memcpy(bytes.data() + old, &x, sizeof(T));
  }
  void put_bytes(std::span<const std::byte> b) {
    put<std::uint64_t>(b.size());
    bytes.insert(bytes.end(), b.begin(), b.end());
  }
  void put_string(const std::string& s) { put_bytes(std::as_bytes(std::span{s.data(), s.size()})); }
  std::vector<std::byte> bytes;
};

class record_reader {
public:
  explicit record_reader(std::span<const std::byte> b) : rest_(b) {}
  template <class T>
  T get() {
    need(sizeof(T));
    T x;
    std::memcpy(&x, rest_.data(), sizeof(T));
    rest_ = rest_.subspan(sizeof(T));
    return x;
  }
  std::span<const std::byte> get_bytes() {
    auto n = get<std::uint64_t>();
    need(n);
    auto out = rest_.first(n);
    rest_ = rest_.subspan(n);
    return out;
  }
  std::string get_string() {
    auto b = get_bytes();
    return std::string{reinterpret_cast<const char*>(b.data()), b.size()};
  }

private:
  void need(std::size_t n) const {
    if (rest_.size() < n) throw bad_message_error{"the spawn bootstrap record is truncated"};
  }
  std::span<const std::byte> rest_;
};

struct module_match {
  std::uintptr_t address = 0;
  std::string name;        // in: the name to find; out: the name found
  std::uintptr_t base = 0; // out
  bool first = true;
  bool found = false;
};

// Finds the loaded module that contains `address` (its name: "" for the program itself).
module_match module_of(std::uintptr_t address) {
  module_match m;
  m.address = address;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto& found = *static_cast<module_match*>(data);
        bool first = found.first;
        found.first = false;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const auto& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          auto lo = info->dlpi_addr + ph.p_vaddr;
          if (found.address >= lo && found.address < lo + ph.p_memsz) {
            found.name = first ? std::string{} : std::string{info->dlpi_name};
            found.base = info->dlpi_addr;
            found.found = true;
            return 1;
          }
        }
        return 0;
      },
      &m);
  return m;
}

// Finds the load address of the module named `name` ("" for the program itself).
std::optional<std::uintptr_t> module_base(const std::string& name) {
  module_match m;
  m.name = name;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto& found = *static_cast<module_match*>(data);
        bool first = found.first;
        found.first = false;
        if ((found.name.empty() && first) || (!first && found.name == info->dlpi_name)) {
          found.base = info->dlpi_addr;
          found.found = true;
          return 1;
        }
        return 0;
      },
      &m);
  if (!m.found) return std::nullopt;
  return m.base;
}

// The program's command line, as the kernel recorded it.
const std::vector<std::string>& command_line() {
  static const std::vector<std::string> args = [] {
    std::vector<std::string> out;
    std::ifstream in{"/proc/self/cmdline", std::ios::binary};
    std::string arg;
    while (std::getline(in, arg, '\0')) out.push_back(arg);
    return out;
  }();
  return args;
}

class fd_guard {
public:
  explicit fd_guard(int fd) noexcept : fd_(fd) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

private:
  int fd_;
};

class spawn_actions {
public:
  spawn_actions() {
    if (int rc = posix_spawn_file_actions_init(&fa_); rc != 0)
      throw_errno(rc, "posix_spawn_file_actions_init failed");
    if (int rc = posix_spawnattr_init(&attr_); rc != 0) {
      posix_spawn_file_actions_destroy(&fa_);
      throw_errno(rc, "posix_spawnattr_init failed");
    }
  }
  spawn_actions(const spawn_actions&) = delete;
  spawn_actions& operator=(const spawn_actions&) = delete;
  ~spawn_actions() {
    posix_spawnattr_destroy(&attr_);
    posix_spawn_file_actions_destroy(&fa_);
  }
  posix_spawn_file_actions_t fa_;
  posix_spawnattr_t attr_;
};

void check(int rc, const char* what) {
  if (rc != 0) throw_errno(rc, std::string{"cannot start a process: "} + what + " failed");
}

struct spawn_request {
  std::vector<std::byte> record;
  std::vector<int> fds; // arguments' descriptors, then the parent's pidfd
};

// posix_spawn of this program with `sources` moved to descriptors 3, 4, ... (every other
// descriptor but 0, 1 and 2 closed) and `marker` ("NAME=value") added to the environment;
// returns the pid.
pid_t spawn_self(const std::vector<int>& sources, const std::string& marker) {
  // Sources go first to numbers above all of them, then down to 3, 4, ... in increasing order:
  // a move never overwrites a descriptor still to be moved.
  int high = std::max(*std::max_element(sources.begin(), sources.end()) + 1, record_fd) +
             static_cast<int>(sources.size());
  spawn_actions sa;
  for (std::size_t i = 0; i < sources.size(); ++i)
    check(posix_spawn_file_actions_adddup2(&sa.fa_, sources[i], high + static_cast<int>(i)),
          "posix_spawn_file_actions_adddup2");
  for (std::size_t i = 0; i < sources.size(); ++i)
    check(posix_spawn_file_actions_adddup2(&sa.fa_, high + static_cast<int>(i),
                                           record_fd + static_cast<int>(i)),
          "posix_spawn_file_actions_adddup2");
  check(posix_spawn_file_actions_addclosefrom_np(&sa.fa_,
                                                 record_fd + static_cast<int>(sources.size())),
        "posix_spawn_file_actions_addclosefrom_np");
  sigset_t none;
  sigemptyset(&none);
  check(posix_spawnattr_setsigmask(&sa.attr_, &none), "posix_spawnattr_setsigmask");
  check(posix_spawnattr_setflags(&sa.attr_, POSIX_SPAWN_SETSIGMASK), "posix_spawnattr_setflags");

  const auto& args = command_line();
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  auto spawn_prefix = std::string{spawn_variable} + "=";
  auto server_prefix = std::string{forkserver_variable} + "=";
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    if (std::strncmp(*e, spawn_prefix.c_str(), spawn_prefix.size()) != 0 &&
        std::strncmp(*e, server_prefix.c_str(), server_prefix.size()) != 0)
      envp.push_back(*e);
  std::string marker_copy = marker;
  envp.push_back(marker_copy.data());
  envp.push_back(nullptr);

  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, "/proc/self/exe", &sa.fa_, &sa.attr_, argv.data(), envp.data());
  if (rc != 0) throw_errno(rc, "cannot start a process: posix_spawn of /proc/self/exe failed");
  return pid;
}

// Writes `bytes` into a new memfd; returns it.
int record_memfd(const std::vector<std::byte>& bytes) {
  int fd = ::memfd_create("tandem-spawn", MFD_CLOEXEC);
  if (fd < 0) throw_errno(errno, "cannot start a process: memfd_create failed");
  fd_guard guard{fd};
  std::size_t off = 0;
  while (off < bytes.size()) {
    auto n = ::pwrite(fd, bytes.data() + off, bytes.size() - off, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "cannot start a process: writing its bootstrap record failed");
    }
    off += static_cast<std::size_t>(n);
  }
  return guard.release();
}

// posix_spawn of this program with the record and descriptors; returns the pid.
pid_t spawn_child(const spawn_request& req) {
  fd_guard memfd{record_memfd(req.record)};
  std::vector<int> sources{memfd.get()};
  sources.insert(sources.end(), req.fds.begin(), req.fds.end());
  return spawn_self(sources, std::string{spawn_variable} + "=" + std::to_string(record_fd));
}

// Runs `fn` on the launcher thread (a thread that never ends) and returns what it returns.
pid_t on_launcher(const std::function<pid_t()>& fn) {
  launcher* current = nullptr;
  {
    auto& slot = the_launcher_slot();
    std::lock_guard guard{slot.mtx};
    if (slot.current == nullptr) slot.current = std::make_unique<launcher>().release();
    current = slot.current;
  }
  auto& la = *current;
  std::mutex done_mtx;
  std::condition_variable done_cv;
  bool done = false;
  pid_t result = 0;
  std::exception_ptr exc;
  {
    std::lock_guard guard{la.mtx};
    la.jobs.emplace_back([&] {
      try {
        result = fn();
      } catch (...) {
        exc = std::current_exception();
      }
      std::lock_guard g{done_mtx};
      done = true;
      done_cv.notify_one();
    });
  }
  la.cv.notify_one();
  std::unique_lock lk{done_mtx};
  done_cv.wait(lk, [&] { return done; });
  if (exc) std::rethrow_exception(exc);
  return result;
}

// The names of this process's threads, for fork's refusal.
std::string describe_threads(std::size_t total) {
  std::string names;
  std::size_t known = 0;
  for (auto& t : tandem::enumerate()) {
    if (!names.empty()) names += ", ";
    names += t.name();
    ++known;
  }
  if (total > known) {
    if (!names.empty()) names += ", ";
    names += std::to_string(total - known) + " thread" + (total - known == 1 ? "" : "s") +
             " tandem did not start";
  }
  return names;
}

std::size_t count_threads() {
  std::size_t n = 0;
  if (auto* dir = ::opendir("/proc/self/task")) {
    while (auto* e = ::readdir(dir))
      if (e->d_name[0] != '.') ++n;
    ::closedir(dir);
  }
  return n;
}

} // namespace

// -- process
// ----------------------------------------------------------------------------------------

std::string_view to_string(start_method m) noexcept {
  switch (m) {
    case start_method::fork:
      return "fork";
    case start_method::spawn:
      return "spawn";
    case start_method::forkserver:
      return "forkserver";
  }
  return "unknown";
}

process::process(options opts, std::unique_ptr<detail::process_launch> launch) {
  auto& id = the_identity();
  std::string name = std::move(opts.name);
  std::string path;
  {
    std::lock_guard guard{id.mtx};
    path = (id.path.empty() ? std::string{} : id.path + ":") + std::to_string(++id.counter);
  }
  if (name.empty()) name = "Process-" + path;
  bool daemon = opts.daemon ? *opts.daemon : id.current_state().daemon();
  auto method = opts.method ? *opts.method : get_start_method();
  state_ = std::make_shared<process_state>(process_kind::child, std::move(name), daemon, method);
  state_->allow_threads = opts.allow_threads;
  state_->path = std::move(path);
  state_->launch = std::move(launch);
}

process::process(std::shared_ptr<detail::process_state> state) noexcept
    : state_(std::move(state)) {}

process::process(process&& other) noexcept = default;
process& process::operator=(process&& other) noexcept = default;
process::~process() = default;

detail::process_state& process::checked(const char* what) const {
  if (!state_)
    throw usage_error{std::string{"cannot "} + what +
                      " an empty process handle (moved from): use the handle it was moved to"};
  std::lock_guard guard{state_->mtx};
  if (state_->phase == process_state::closed)
    throw value_error{std::string{"cannot "} + what + " process " + state_->name_ +
                      ": process object is closed"};
  return *state_;
}

namespace {

void check_own_child(const process_state& s, const char* what) {
  if (s.kind == process_kind::current)
    throw usage_error{std::string{"cannot "} + what + " the current process (" + s.name() + ")"};
  if (s.kind == process_kind::parent || s.creator != ::getpid())
    throw usage_error{std::string{"can only "} + what + " a child process: " + s.name() +
                      " was not started by this process"};
}

// The bootstrap record of `s` (spawn and forkserver) with its descriptors.
spawn_request build_request(process_state& s, identity& id, const std::string& path,
                            int parent_pidfd, const detail::child_channels& mailbox) {
  auto where = module_of(s.launch->target());
  auto entry_where = module_of(s.launch->entry());
  if (!where.found || !entry_where.found || where.name != entry_where.name)
    throw usage_error{"cannot start process " + s.name() + " with the " +
                      std::string{to_string(s.method)} +
                      " method: its target is not in a module loaded at startup; pass a "
                      "function of the program, or use the fork method"};
  spawn_request req;
  std::vector<std::vector<std::byte>> args;
  s.launch->save(args, req.fds);
  auto parent_index = req.fds.size();
  req.fds.push_back(parent_pidfd);
  req.fds.push_back(mailbox.box.fileno());
  req.fds.push_back(mailbox.requests.fileno());

  record_writer w;
  w.put(record_magic);
  w.put_string(where.name);
  w.put<std::uint64_t>(s.launch->entry() - where.base);
  w.put<std::uint64_t>(s.launch->target() - where.base);
  w.put_string(s.name());
  w.put<std::uint8_t>(s.daemon() ? 1 : 0);
  w.put_string(path);
  w.put<std::int32_t>(::getpid());
  w.put_string(id.current_state().name());
  std::uint8_t method;
  {
    std::lock_guard guard{id.mtx};
    method = id.method ? static_cast<std::uint8_t>(*id.method) : 0xff;
  }
  w.put(method);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(req.fds.size()));
  w.put<std::uint32_t>(static_cast<std::uint32_t>(parent_index));
  w.put<std::uint32_t>(static_cast<std::uint32_t>(parent_index + 1));
  w.put<std::uint32_t>(static_cast<std::uint32_t>(parent_index + 2));
  w.put<std::uint32_t>(static_cast<std::uint32_t>(args.size()));
  for (auto& a : args) w.put_bytes(a);
  req.record = std::move(w.bytes);
  return req;
}

pid_t start_spawn(process_state& s, identity& id, const std::string& path, int parent_pidfd,
                  const detail::child_channels& mailbox) {
  auto req = build_request(s, id, path, parent_pidfd, mailbox);
  if (s.daemon() && !on_main_thread()) return on_launcher([&] { return spawn_child(req); });
  return spawn_child(req);
}

// -- forkserver: the parent's side ----------------------------------------------------------------

struct request_header {
  std::uint32_t magic;
  std::uint32_t in_memfd; // 1: the record is in the first descriptor, 0: it follows the header
  std::uint64_t size;
};

struct reply_header {
  std::int32_t pid;
  std::int32_t error; // an errno when the server could not start the child; then no descriptors
};

// Sends `bytes` with `fds` (SCM_RIGHTS) as one message. Returns 0 or an errno.
int send_with_fds(int sock, std::span<const std::byte> bytes, std::span<const int> fds) {
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<std::byte> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    if (::sendmsg(sock, &msg, MSG_NOSIGNAL) >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

// Receives one message into `buf` and the descriptors it carries (close-on-exec) into `fds`.
// Returns its size, 0 at EOF, -1 with errno set; sets `truncated` when the message or its
// descriptors did not fit (the descriptors received are returned all the same).
ssize_t recv_with_fds(int sock, std::span<std::byte> buf, std::vector<int>& fds, bool& truncated) {
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::byte control[CMSG_SPACE(sizeof(int) * max_passed_fds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  fds.clear();
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    auto count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    auto old = fds.size();
    fds.resize(old + count);
    std::memcpy(fds.data() + old, CMSG_DATA(c), count * sizeof(int));
  }
  truncated = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
  return n;
}

void close_all(const std::vector<int>& fds) noexcept {
  for (int fd : fds) ::close(fd);
}

// Forgets the server: closes the control socket and collects the server's exit status (killing
// it first: it is either dead already or of no use).
void drop_server(forkserver_client& fs) noexcept {
  // requires fs.mtx
  if (fs.ctl >= 0) ::close(fs.ctl);
  if (fs.pidfd >= 0) {
    pidfd_send_signal(fs.pidfd, SIGKILL);
    siginfo_t info{};
    while (::waitid(p_pidfd, static_cast<id_t>(fs.pidfd), &info, WEXITED) < 0 && errno == EINTR) {
    }
    ::close(fs.pidfd);
  }
  fs.ctl = -1;
  fs.pidfd = -1;
  fs.pid = 0;
}

// Starts the server: from the main thread or the launcher thread, which live as long as this
// process, because the server's parent-death signal is tied to the thread that created it.
void start_server(forkserver_client& fs) {
  // requires fs.mtx
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
    throw_errno(errno, "cannot start the forkserver: socketpair failed");
  fd_guard ours{sp[0]};
  fd_guard theirs{sp[1]};
  auto marker = std::string{forkserver_variable} + "=" + std::to_string(control_fd) + ":" +
                std::to_string(::getpid());
  auto launch = [&] { return spawn_self({theirs.get()}, marker); };
  pid_t pid = on_main_thread() ? launch() : on_launcher(launch);
  int pidfd = pidfd_open(pid, 0);
  if (pidfd < 0) {
    int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw_errno(err, "cannot start the forkserver: pidfd_open failed");
  }
  fs.ctl = ours.release();
  fs.pid = pid;
  fs.pidfd = pidfd;
}

struct started_child {
  pid_t pid;
  int pidfd;
  int status_fd;
};

// Asks the forkserver (started on first use, restarted when it died) for a child.
started_child start_forkserver_child(const std::string& name, const spawn_request& req) {
  bool in_line = req.record.size() <= inline_record_limit;
  std::vector<std::byte> message(sizeof(request_header) + (in_line ? req.record.size() : 0));
  std::vector<int> fds;
  std::optional<fd_guard> memfd;
  request_header h{request_magic, 0, req.record.size()};
  if (in_line) {
    if (!req.record.empty())
      std::memcpy(message.data() + sizeof h, req.record.data(), req.record.size());
  } else {
    h.in_memfd = 1;
    memfd.emplace(record_memfd(req.record));
    fds.push_back(memfd->get());
  }
  std::memcpy(message.data(), &h, sizeof h);
  fds.insert(fds.end(), req.fds.begin(), req.fds.end());
  if (fds.size() > max_passed_fds)
    throw usage_error{"cannot start process " + name + " with the forkserver method: its " +
                      "arguments hold " + std::to_string(req.fds.size() - 3) +
                      " descriptors, more than one message carries (" +
                      std::to_string(max_passed_fds - 4) + "); use the spawn method"};

  auto& fs = the_forkserver();
  std::lock_guard guard{fs.mtx};
  for (int attempt = 0;; ++attempt) {
    if (fs.ctl < 0) start_server(fs);
    if (int err = send_with_fds(fs.ctl, message, fds); err != 0) {
      auto server = fs.pid;
      drop_server(fs);
      // The server died before this request: a new one can take it.
      if ((err == EPIPE || err == ECONNRESET || err == ENOTCONN) && attempt == 0) continue;
      throw_errno(err, "cannot start process " + name + ": sending the request to the " +
                           "forkserver (pid " + std::to_string(server) + ") failed");
    }
    reply_header r{};
    std::vector<int> got;
    bool truncated = false;
    auto n = recv_with_fds(fs.ctl, std::as_writable_bytes(std::span{&r, 1}), got, truncated);
    if (n <= 0 || truncated || static_cast<std::size_t>(n) != sizeof r ||
        (r.error == 0 && got.size() != 2) || (r.error != 0 && !got.empty())) {
      int err = n < 0 ? errno : 0;
      close_all(got);
      auto server = fs.pid;
      drop_server(fs);
      throw process_error{"cannot start process " + name + ": the forkserver (pid " +
                          std::to_string(server) + ") " +
                          (n == 0 ? std::string{"ended while starting it"}
                           : n < 0
                               ? "could not be read (" + std::system_category().message(err) + ")"
                               : std::string{"sent a malformed reply"}) +
                          "; the next start starts a new server"};
    }
    if (r.error != 0)
      throw_errno(r.error, "cannot start process " + name + ": the forkserver could not fork it");
    return {static_cast<pid_t>(r.pid), got[0], got[1]};
  }
}

[[noreturn]] void run_fork_child(process_state& s, identity& id, const std::string& path,
                                 pid_t parent, const std::string& parent_name,
                                 detail::child_channels& mailbox) {
  bool daemon = s.daemon_;
  if (daemon) die_with_parent(parent);
  auto parent_state =
      std::make_shared<process_state>(process_kind::parent, parent_name, false, start_method::fork);
  parent_state->pid = parent;
  parent_state->pidfd = id.self_pidfd; // inherited: the parent's pidfd
  parent_state->phase = process_state::started;
  auto name = s.name_;
  become_child(id, name, daemon, path, std::move(parent_state));
  detail::set_parent_mailbox(std::move(mailbox));
  auto code = run_target(name, [&] { s.launch->run(); });
  finish_child(code);
}

} // namespace

void process::start() {
  auto& s = checked("start");
  if (s.kind != process_kind::child || s.creator != ::getpid())
    throw usage_error{"can only start a process object created by the current process: " +
                      s.name() + " is not one"};
  auto& id = the_identity();
  if (id.current_state().daemon())
    throw usage_error{"daemonic processes are not allowed to have children: " +
                      id.current_state().name() + " is a daemon, so it cannot start " + s.name()};
  {
    std::lock_guard guard{s.mtx};
    if (s.phase != process_state::initial || !s.launch)
      throw usage_error{"cannot start a process twice: " + s.name_ +
                        " was started before; create a new process object"};
  }
  collect_finished();
  auto& reg = the_registry();
  std::call_once(reg.exit_handler_installed, [] { std::atexit(children_at_exit); });

  const std::string& path = s.path;
  int parent_pidfd;
  {
    std::lock_guard guard{id.mtx};
    parent_pidfd = self_pidfd(id);
  }

  // The mailbox: the parent's ends stay in the state, the child's go to the child (and are
  // closed here once it has them).
  detail::child_channels child_ends;
  {
    auto [box_parent, box_child] = pipe(true);
    auto [requests_parent, requests_child] = pipe(true);
    child_ends.box = std::move(box_child);
    child_ends.requests = std::move(requests_child);
    detail::forget_parent_ends(s); // those of a start that failed
    std::lock_guard guard{s.mtx};
    s.box = std::move(box_parent);
    s.requests = std::move(requests_parent);
  }
  remember_parent_ends(s);

  pid_t pid = 0;
  int pidfd = -1;     // forkserver: made by the server
  int status_fd = -1; // forkserver: where the server relays the exit status
  if (s.method == start_method::fork) {
    auto threads = count_threads();
    if (threads > 1 && !s.allow_threads)
      throw usage_error{"cannot start process " + s.name() +
                        " with the fork method: " + std::to_string(threads) +
                        " threads are running (" + describe_threads(threads) +
                        ") and fork copies only the calling one, so locks the others hold stay "
                        "locked in the child; use the spawn method, start the process before "
                        "the threads, or set options.allow_threads"};
    auto self = ::getpid();
    auto parent_name = id.current_state().name();
    std::fflush(nullptr);
    pid = ::fork();
    if (pid < 0) throw_errno(errno, "cannot start process " + s.name() + ": fork failed");
    if (pid == 0) run_fork_child(s, id, path, self, parent_name, child_ends);
  } else if (s.method == start_method::spawn) {
    pid = start_spawn(s, id, path, parent_pidfd, child_ends);
  } else {
    auto req = build_request(s, id, path, parent_pidfd, child_ends);
    auto child = start_forkserver_child(s.name(), req);
    pid = child.pid;
    pidfd = child.pidfd;
    status_fd = child.status_fd;
  }
  if (pidfd < 0) pidfd = pidfd_open(pid, 0);
  if (pidfd < 0) {
    int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw_errno(err, "cannot start process " + s.name() + ": pidfd_open failed");
  }
  std::unique_ptr<detail::process_launch> launch;
  {
    std::lock_guard guard{s.mtx};
    s.pid = pid;
    s.pidfd = pidfd;
    s.status_fd = status_fd;
    s.phase = process_state::started;
    launch = std::move(s.launch); // the parent's copy of the arguments goes now
  }
  s.registered = true;
  {
    std::lock_guard guard{reg.mtx};
    reg.children.push_back(state_);
  }
}

bool process::join(timeout t) {
  return join_impl(t, nullptr);
}

bool process::join(std::stop_token st, timeout t) {
  return join_impl(t, &st);
}

bool process::join_impl(const timeout& t, const std::stop_token* st) {
  auto& s = checked("join");
  if (s.kind == process_kind::parent) return wait_readable(s.pidfd, t, st);
  check_own_child(s, "join");
  {
    std::lock_guard guard{s.mtx};
    if (s.phase != process_state::started)
      throw usage_error{"can only join a started process: call start() on " + s.name_ + " first"};
  }
  if (collect(s)) return true;
  if (!wait_readable(s.pidfd, t, st)) return false;
  return collect(s);
}

void process::terminate() {
  auto& s = checked("terminate");
  check_own_child(s, "terminate");
  if (std::lock_guard guard{s.mtx}; s.phase == process_state::initial)
    throw usage_error{"cannot terminate process " + s.name_ + " before it is started"};
  send_signal(s, SIGTERM);
}

void process::kill() {
  auto& s = checked("kill");
  check_own_child(s, "kill");
  if (std::lock_guard guard{s.mtx}; s.phase == process_state::initial)
    throw usage_error{"cannot kill process " + s.name_ + " before it is started"};
  send_signal(s, SIGKILL);
}

void process::close() {
  if (!state_) return;
  auto& s = *state_;
  if (s.kind != process_kind::child)
    throw usage_error{"cannot close " + s.name() + ": only a child process's handle can be closed"};
  {
    std::lock_guard guard{s.mtx};
    if (s.phase == process_state::closed) return;
  }
  if (s.phase == process_state::started && s.creator == ::getpid() && !collect(s))
    throw value_error{"Cannot close a process while it is still running. You should first call "
                      "join() or terminate(): " +
                      s.name() + " is running"};
  detail::forget_parent_ends(s);
  {
    std::scoped_lock locks{s.send_mtx, s.box_mtx};
    s.box.close();
    s.requests.close();
  }
  std::lock_guard guard{s.mtx};
  if (s.pidfd >= 0) ::close(s.pidfd);
  s.pidfd = -1;
  if (s.status_fd >= 0) ::close(s.status_fd);
  s.status_fd = -1;
  s.launch.reset();
  s.phase = process_state::closed;
}

// -- the mailbox ----------------------------------------------------------------------------------

detail::process_state& process::mailbox_checked(const char* what) const {
  auto& s = checked(what);
  check_own_child(s, what);
  std::lock_guard guard{s.mtx};
  if (s.phase == process_state::initial)
    throw usage_error{std::string{"cannot "} + what + " process " + s.name_ +
                      " before it is started: its mailbox is made by start()"};
  return s;
}

void process::send_message(std::span<const std::byte> bytes) {
  auto& s = mailbox_checked("send to");
  std::lock_guard guard{s.send_mtx};
  s.box.send_bytes(bytes);
}

std::optional<std::vector<std::byte>> process::recv_message(timeout t) {
  auto& s = mailbox_checked("receive from");
  std::lock_guard guard{s.box_mtx};
  return s.box.recv_bytes(t);
}

std::optional<std::vector<std::byte>> process::recv_message(std::stop_token st, timeout t) {
  auto& s = mailbox_checked("receive from");
  std::lock_guard guard{s.box_mtx};
  return s.box.recv_bytes(std::move(st), t);
}

bool process::poll(timeout t) {
  auto& s = mailbox_checked("poll");
  std::lock_guard guard{s.box_mtx};
  return s.box.poll(t);
}

connection& process::connection() {
  return mailbox_checked("get the connection of").box;
}

caf::actor process::actor() {
  auto& s = mailbox_checked("get the actor of");
  std::lock_guard guard{s.actor_mtx};
  if (!s.actor_link) {
    int sentinel = ::fcntl(s.pidfd, F_DUPFD_CLOEXEC, 0);
    if (sentinel < 0) throw_errno(errno, "cannot make the actor of " + s.name() + ": dup failed");
    auto link = std::make_shared<detail::process_actor_link>();
    mp::connection requests;
    {
      std::lock_guard state_guard{s.mtx};
      requests = std::move(s.requests);
    }
    auto self = detail::make_process_actor(process_access::make(state_), std::move(requests),
                                           sentinel, link);
    s.actor_link = std::move(link);
    return self;
  }
  auto& link = *s.actor_link;
  std::lock_guard link_guard{link.mtx};
  if (auto self = caf::actor_cast<caf::actor>(link.actor)) return self;
  return detail::ended_process_actor(
      s.name(), link.reason.value_or(caf::make_error(caf::exit_reason::user_shutdown)));
}

std::optional<int> detail::collected_exit_code(const process& p) noexcept {
  auto& s = process_access::state(p);
  if (!s) return std::nullopt;
  try {
    collect(*s);
  } catch (...) {
    return std::nullopt;
  }
  std::lock_guard guard{s->mtx};
  return s->code;
}

std::string process::name() const {
  return checked("get the name of").name();
}

void process::name(std::string new_name) {
  auto& s = checked("rename");
  std::lock_guard guard{s.mtx};
  s.name_ = std::move(new_name);
}

bool process::daemon() const {
  return checked("get the daemon flag of").daemon();
}

void process::set_daemon(bool daemonic) {
  auto& s = checked("set the daemon flag of");
  std::lock_guard guard{s.mtx};
  if (s.phase != process_state::initial)
    throw usage_error{"process has already started: cannot set the daemon flag of " + s.name_};
  s.daemon_ = daemonic;
}

std::optional<pid_t> process::pid() const {
  auto& s = checked("get the pid of");
  if (s.kind == process_kind::current) return ::getpid();
  std::lock_guard guard{s.mtx};
  if (s.phase == process_state::initial) return std::nullopt;
  return s.pid;
}

std::optional<int> process::exitcode() const {
  auto& s = checked("get the exit code of");
  if (s.kind != process_kind::child) return std::nullopt;
  {
    std::lock_guard guard{s.mtx};
    if (s.phase == process_state::initial) return std::nullopt;
  }
  if (s.creator == ::getpid()) collect(s);
  std::lock_guard guard{s.mtx};
  if (s.lost) throw process_error{s.lost_reason};
  return s.code;
}

bool process::is_alive() const {
  auto& s = checked("test");
  if (s.kind == process_kind::current) return true;
  if (s.kind == process_kind::parent)
    return !wait_readable(s.pidfd, timeout{std::chrono::seconds{0}});
  check_own_child(s, "test");
  {
    std::lock_guard guard{s.mtx};
    if (s.phase == process_state::initial) return false;
  }
  return !collect(s);
}

int process::sentinel() const {
  auto& s = checked("get the sentinel of");
  if (s.kind == process_kind::current)
    throw usage_error{"the current process has no sentinel: use parent_process() or a child's"};
  std::lock_guard guard{s.mtx};
  if (s.phase == process_state::initial)
    throw usage_error{"process not started: " + s.name_ + " has no sentinel before start()"};
  return s.pidfd;
}

start_method process::method() const {
  return checked("get the start method of").method;
}

// -- module-level functions
// -------------------------------------------------------------------------

process& current_process() {
  return the_identity().current;
}

std::optional<process> parent_process() {
  auto& id = the_identity();
  std::lock_guard guard{id.mtx};
  if (!id.parent) return std::nullopt;
  return process_access::make(id.parent);
}

std::vector<process> active_children() {
  std::vector<process> out;
  for (auto& c : snapshot_children())
    if (!collect_noexcept(*c)) out.push_back(process_access::make(c));
  return out;
}

namespace {

// The cgroup v2 CPU quota of this process (the smallest along its cgroup's path), if any.
std::optional<std::size_t> cgroup_cpu_limit() {
  std::ifstream cg{"/proc/self/cgroup"};
  std::string line, path;
  while (std::getline(cg, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  if (path.empty()) return std::nullopt;
  std::optional<std::size_t> best;
  for (;;) {
    std::ifstream max{"/sys/fs/cgroup" + (path == "/" ? std::string{} : path) + "/cpu.max"};
    std::string quota;
    double period = 0;
    if (max >> quota >> period && quota != "max" && period > 0) {
      auto q = std::strtod(quota.c_str(), nullptr);
      if (q > 0) {
        auto n = static_cast<std::size_t>(std::ceil(q / period));
        best = best ? std::min(*best, n) : n;
      }
    }
    if (path == "/" || path.empty()) break;
    auto slash = path.rfind('/');
    path = slash == 0 ? "/" : path.substr(0, slash);
  }
  return best;
}

} // namespace

std::size_t cpu_count() noexcept {
  std::size_t n = 0;
  for (std::size_t cpus = 1024; cpus <= (1u << 20) && n == 0; cpus *= 2) {
    auto size = CPU_ALLOC_SIZE(cpus);
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (set == nullptr) break;
    if (sched_getaffinity(0, size, set) == 0)
      n = static_cast<std::size_t>(CPU_COUNT_S(size, set));
    else if (errno != EINVAL)
      cpus = 1u << 21;
    CPU_FREE(set);
  }
  if (n == 0) {
    auto online = ::sysconf(_SC_NPROCESSORS_ONLN);
    n = online > 0 ? static_cast<std::size_t>(online) : 1;
  }
  try {
    if (auto limit = cgroup_cpu_limit()) n = std::min(n, *limit);
  } catch (...) {
  }
  return std::max<std::size_t>(n, 1);
}

void set_start_method(start_method m, bool force) {
  auto& id = the_identity();
  std::lock_guard guard{id.mtx};
  if (id.method && !force)
    throw usage_error{"context has already been set: the start method is " +
                      std::string{to_string(*id.method)} +
                      "; call set_start_method once, before creating processes, or pass force"};
  id.method = m;
}

start_method get_start_method() {
  auto& id = the_identity();
  std::lock_guard guard{id.mtx};
  // forkserver: see the file comment of process.hpp for the measured start latencies.
  if (!id.method) id.method = start_method::forkserver;
  return *id.method;
}

std::vector<start_method> get_all_start_methods() {
  return {start_method::forkserver, start_method::spawn, start_method::fork};
}

void exit(int code) {
  if (in_target) throw process_exit{code};
  std::fflush(nullptr);
  std::exit(code & 0xff);
}

namespace {

[[noreturn]] void bootstrap_failed(const std::string& what) noexcept {
  write_stderr("tandem: this program was started as a spawn or forkserver child but cannot "
               "become it: " +
               what + "\n");
  ::_exit(1);
}

// What a spawn or forkserver child needs to become its target, parsed from its record.
struct child_plan {
  std::vector<std::byte> bytes;
  std::vector<int> fds; // the arguments' descriptors
  std::vector<detail::arg_reader> readers;
  std::string name;
  bool daemon = false;
  std::string path;
  pid_t parent = 0;
  std::string parent_name;
  int parent_pidfd = -1;
  detail::child_channels mailbox;
  std::uint8_t method = 0xff;
  detail::spawn_entry_fn entry = nullptr;
  std::uintptr_t target = 0;
};

// Parses a bootstrap record whose descriptors are `given` (forkserver) or 4, 5, ... (spawn). A
// daemon child gets its parent-death signal here, tied to `os_parent` (the process that created
// it: the server) or, when 0, to the parent the record names.
std::unique_ptr<child_plan> parse_plan(std::vector<std::byte> bytes,
                                       std::optional<std::vector<int>> given, pid_t os_parent) {
  auto plan = std::make_unique<child_plan>();
  plan->bytes = std::move(bytes);
  record_reader r{plan->bytes};
  if (r.get<std::uint32_t>() != record_magic)
    throw bad_message_error{"the bootstrap record is not tandem's"};
  auto module = r.get_string();
  auto entry_offset = r.get<std::uint64_t>();
  auto target_offset = r.get<std::uint64_t>();
  plan->name = r.get_string();
  plan->daemon = r.get<std::uint8_t>() != 0;
  plan->path = r.get_string();
  plan->parent = static_cast<pid_t>(r.get<std::int32_t>());
  plan->parent_name = r.get_string();
  plan->method = r.get<std::uint8_t>();
  auto nfds = r.get<std::uint32_t>();
  auto parent_index = r.get<std::uint32_t>();
  auto box_index = r.get<std::uint32_t>();
  auto requests_index = r.get<std::uint32_t>();
  auto nargs = r.get<std::uint32_t>();
  // The record's writer puts the parent's pidfd and then the mailbox last, in this order.
  if (parent_index + 2 >= nfds || box_index != parent_index + 1 ||
      requests_index != parent_index + 2)
    throw bad_message_error{"the parent's descriptors are missing"};
  if (given) {
    if (given->size() != nfds)
      throw bad_message_error{"the record names " + std::to_string(nfds) + " descriptors but " +
                              std::to_string(given->size()) + " arrived"};
    plan->fds = std::move(*given);
  } else {
    for (std::uint32_t i = 0; i < nfds; ++i)
      plan->fds.push_back(record_fd + 1 + static_cast<int>(i));
  }
  if (plan->daemon) die_with_parent(os_parent != 0 ? os_parent : plan->parent);

  auto base = module_base(module);
  if (!base) throw bad_message_error{"the module " + module + " holding the target is not loaded"};
  plan->entry = reinterpret_cast<detail::spawn_entry_fn>(*base + entry_offset);
  plan->target = *base + target_offset;
  plan->parent_pidfd = plan->fds[parent_index];
  plan->mailbox.box = connection{plan->fds[box_index], true, true};
  plan->mailbox.requests = connection{plan->fds[requests_index], true, true};
  // The parent's ends came from pipe(), which moves large messages through shared memory.
  plan->mailbox.box.set_shared_memory_transfers(true);
  plan->mailbox.requests.set_shared_memory_transfers(true);
  plan->fds.resize(parent_index); // not an argument's
  for (std::uint32_t i = 0; i < nargs; ++i) plan->readers.push_back({r.get_bytes(), plan->fds});
  return plan;
}

// The child becomes the process the plan describes, runs the target and ends.
[[noreturn]] void run_plan(child_plan& plan) {
  try {
    auto& id = the_identity();
    auto parent_state = std::make_shared<process_state>(process_kind::parent, plan.parent_name,
                                                        false, start_method::spawn);
    parent_state->pid = plan.parent;
    parent_state->pidfd = plan.parent_pidfd;
    parent_state->phase = process_state::started;
    std::lock_guard guard{id.mtx};
    become_child(id, plan.name, plan.daemon, plan.path, std::move(parent_state));
    if (plan.method <= static_cast<std::uint8_t>(start_method::forkserver))
      id.method = static_cast<start_method>(plan.method);
  } catch (const std::exception& e) {
    bootstrap_failed(e.what());
  }
  detail::set_parent_mailbox(std::move(plan.mailbox));
  auto code = run_target(plan.name, [&] { plan.entry(plan.target, plan.readers); });
  finish_child(code);
}

// A forkserver child's plan, parsed right after fork, run by freeze_support().
std::unique_ptr<child_plan>& pending_plan() {
  static no_destroy<std::unique_ptr<child_plan>> plan;
  return plan.get();
}

// -- forkserver: the server -----------------------------------------------------------------------

struct served_child {
  pid_t pid;
  int pidfd;
  int status; // the server's end of the status channel
};

// Reaps `c` if it has exited and relays its status; returns whether it had.
bool relay_status(served_child& c) noexcept {
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(p_pidfd, static_cast<id_t>(c.pidfd), &info, WEXITED | WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0 && info.si_pid == 0) return false;
  if (rc == 0) {
    std::int32_t code = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    // A parent that closed its end no longer wants it (MSG_NOSIGNAL: EPIPE, not SIGPIPE).
    (void)::send(c.status, &code, sizeof code, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  ::close(c.status);
  ::close(c.pidfd);
  return true;
}

// Reads a record of `size` bytes from a memfd.
std::optional<std::vector<std::byte>> read_memfd(int fd, std::uint64_t size) {
  struct stat st {};
  if (::fstat(fd, &st) < 0 || static_cast<std::uint64_t>(st.st_size) != size) return std::nullopt;
  std::vector<std::byte> bytes(static_cast<std::size_t>(size));
  std::size_t off = 0;
  while (off < bytes.size()) {
    auto n = ::pread(fd, bytes.data() + off, bytes.size() - off, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    off += static_cast<std::size_t>(n);
  }
  return bytes;
}

// The forkserver: answers requests on `ctl` until the program closes it (or dies: the server
// gets SIGKILL then). Single-threaded: it runs during static initialization. Returns only in a
// forked child, with pending_plan() set.
void serve(int ctl, pid_t program) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != program) ::_exit(0);
  struct sigaction ignore {};
  struct sigaction dfl {};
  struct sigaction old_int {};
  struct sigaction old_chld {};
  ignore.sa_handler = SIG_IGN;
  dfl.sa_handler = SIG_DFL;
  // Ctrl-C reaches the program, whose end then ends the server (Python's forkserver does this).
  ::sigaction(SIGINT, &ignore, &old_int);
  // SIG_IGN inherited from the program would reap children before their status is relayed.
  ::sigaction(SIGCHLD, &dfl, &old_chld);
  const pid_t self = ::getpid();
  std::vector<served_child> children;
  std::vector<pollfd> pfds;
  std::vector<std::byte> buf(sizeof(request_header) + inline_record_limit);
  std::vector<int> fds;
  for (;;) {
    pfds.assign(1, pollfd{ctl, POLLIN, 0});
    for (auto& c : children) pfds.push_back({c.pidfd, POLLIN, 0});
    if (::poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    for (std::size_t i = children.size(); i-- > 0;)
      if (pfds[i + 1].revents != 0 && relay_status(children[i]))
        children.erase(children.begin() + static_cast<std::ptrdiff_t>(i));
    if (pfds[0].revents == 0) continue;

    bool truncated = false;
    auto n = recv_with_fds(ctl, buf, fds, truncated);
    if (n == 0) ::_exit(0); // the program closed its end: it has ended
    if (n < 0) ::_exit(1);
    request_header h{};
    std::vector<std::byte> record;
    int err = 0;
    if (truncated || static_cast<std::size_t>(n) < sizeof h) {
      err = EMSGSIZE;
    } else {
      std::memcpy(&h, buf.data(), sizeof h);
      auto body = static_cast<std::size_t>(n) - sizeof h;
      if (h.magic != request_magic || (h.in_memfd == 0 && body != h.size)) {
        err = EPROTO;
      } else if (h.in_memfd != 0) {
        auto bytes = fds.empty() ? std::nullopt : read_memfd(fds.front(), h.size);
        if (!bytes) {
          err = EPROTO;
        } else {
          record = std::move(*bytes);
          ::close(fds.front());
          fds.erase(fds.begin());
        }
      } else {
        record.assign(buf.begin() + sizeof h, buf.begin() + static_cast<std::ptrdiff_t>(n));
      }
    }
    int sp[2] = {-1, -1};
    if (err == 0 && ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) err = errno;
    if (err == 0) {
      pid_t pid = ::fork();
      if (pid == 0) {
        ::close(ctl);
        ::close(sp[0]);
        ::close(sp[1]);
        for (auto& c : children) {
          ::close(c.pidfd);
          ::close(c.status);
        }
        ::sigaction(SIGINT, &old_int, nullptr);
        ::sigaction(SIGCHLD, &old_chld, nullptr);
        try {
          pending_plan() = parse_plan(std::move(record), std::move(fds), self);
        } catch (const std::exception& e) {
          bootstrap_failed(e.what());
        }
        return;
      }
      int pidfd = -1;
      if (pid < 0) {
        err = errno;
      } else {
        // Before this loop can reap the child, so the pidfd names it.
        pidfd = pidfd_open(pid, 0);
        if (pidfd < 0) {
          err = errno;
          ::kill(pid, SIGKILL);
          ::waitpid(pid, nullptr, 0);
        }
      }
      if (err == 0) {
        close_all(fds);
        reply_header r{pid, 0};
        int pass[2] = {pidfd, sp[0]};
        // A program that is gone shows as EOF at the next poll.
        (void)send_with_fds(ctl, std::as_bytes(std::span{&r, 1}), pass);
        ::close(sp[0]);
        children.push_back({pid, pidfd, sp[1]});
        continue;
      }
      ::close(sp[0]);
      ::close(sp[1]);
    }
    close_all(fds);
    reply_header r{0, err};
    (void)send_with_fds(ctl, std::as_bytes(std::span{&r, 1}), {});
  }
}

// Runs the server when this execution of the program is one ("FD:PROGRAM_PID" in the marker).
void become_forkserver_if_asked() noexcept {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): static initialization, no other thread yet
  const char* marker = std::getenv(forkserver_variable);
  if (marker == nullptr) return;
  int fd = -1;
  long program = 0;
  if (std::sscanf(marker, "%d:%ld", &fd, &program) != 2 || fd < 0) {
    write_stderr(std::string{"tandem: malformed "} + forkserver_variable + " marker\n");
    ::_exit(1);
  }
  ::unsetenv(forkserver_variable); // NOLINT(concurrency-mt-unsafe): as getenv above
  // A static object of the program that started a thread makes every fork as unsafe as the fork
  // method with threads: say so once (the children still start).
  if (auto threads = count_threads(); threads > 1)
    write_stderr("tandem: the forkserver has " + std::to_string(threads) +
                 " threads (a static object started them); its children may deadlock on locks "
                 "those threads held\n");
  try {
    serve(fd, static_cast<pid_t>(program));
  } catch (const std::exception& e) {
    // Only a forked child gets here (the server itself never returns): it cannot go on.
    bootstrap_failed(e.what());
  }
}

} // namespace

void freeze_support() {
  static std::atomic<bool> entered{false};
  if (auto& pending = pending_plan()) {
    if (entered.exchange(true)) return;
    run_plan(*pending);
  }
  const char* marker = std::getenv(spawn_variable);
  if (marker == nullptr) return;
  if (entered.exchange(true)) return;
  ::unsetenv(spawn_variable);

  std::vector<std::byte> bytes;
  {
    struct stat st {};
    if (::fstat(record_fd, &st) < 0) bootstrap_failed("its bootstrap descriptor is missing");
    bytes.resize(static_cast<std::size_t>(st.st_size));
    std::size_t off = 0;
    while (off < bytes.size()) {
      auto n = ::pread(record_fd, bytes.data() + off, bytes.size() - off, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) bootstrap_failed("its bootstrap record cannot be read");
      off += static_cast<std::size_t>(n);
    }
    ::close(record_fd);
  }
  std::unique_ptr<child_plan> plan;
  try {
    plan = parse_plan(std::move(bytes), std::nullopt, 0);
  } catch (const std::exception& e) {
    bootstrap_failed(e.what());
  }
  run_plan(*plan);
}

// -- shutdown
// ---------------------------------------------------------------------------------------

bool detail::child_pending() noexcept {
  return pending_plan() != nullptr || std::getenv(spawn_variable) != nullptr;
}

bool detail::shutdown_processes(const timeout& t) noexcept {
  bool all = children_at_exit_impl(t);
  detail::stop_process_actors();
  return all;
}

namespace {

// A forkserver is recognized while static objects are built, before main (and so before any
// thread tandem or CAF starts): its forks are safe. Last in this file, so everything above is
// initialized when it runs.
[[maybe_unused]] const bool forkserver_checked = (become_forkserver_if_asked(), true);

} // namespace

} // namespace tandem::mp
