// Process identities, liveness checks and the robust lock word (tandem/mp/detail/robust_word.hpp).

#include <tandem/mp/detail/robust_word.hpp>

#include <tandem/detail/futex.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace tandem::mp::detail {

namespace {

// The fork generation: bumped in every fork() child, so that per-thread caches notice that the
// pid and tid they hold belong to the parent.
std::atomic<std::uint32_t> fork_generation{1};
// The cached tag of this process (0: not computed in this generation yet, or only a pid-only tag
// could be computed so far).
std::atomic<std::uint64_t> cached_tag{0};
// The cached pid of this process (0: not read in this generation yet).
std::atomic<std::int32_t> cached_pid{0};

void on_fork_child() noexcept {
  cached_tag.store(0, std::memory_order_relaxed);
  cached_pid.store(0, std::memory_order_relaxed);
  fork_generation.fetch_add(1, std::memory_order_relaxed);
}

// Registered once per program image, before the first identity is cached.
void register_fork_handler() noexcept {
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, &on_fork_child);
    return true;
  }();
  (void)registered;
}

struct proc_stat {
  char state = '?';
  unsigned long long start = 0;
};

// What reading /proc/<pid>/stat found.
enum class stat_result {
  found,   // `out` is filled in
  gone,    // no such process (ENOENT, ESRCH)
  unknown, // anything else (EMFILE, EACCES, an unreadable line...): no answer either way
};

// Reads a state and start time from the /proc stat file at `path`.
stat_result read_stat_file(const char* path, proc_stat& out) noexcept {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ESRCH ? stat_result::gone : stat_result::unknown;
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  int err = errno;
  ::close(fd);
  if (n < 0) return err == ESRCH ? stat_result::gone : stat_result::unknown;
  if (n == 0) return stat_result::unknown;
  buf[n] = '\0';
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return stat_result::unknown;
  p += 2;
  out.state = *p;
  // Fields 3 (state) to 22 (starttime): skip 19 separators.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return stat_result::unknown;
    ++p;
  }
  out.start = std::strtoull(p, nullptr, 10);
  return stat_result::found;
}

// Reads the state and start time of `pid` from /proc.
stat_result read_stat(pid_t pid, proc_stat& out) noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  return read_stat_file(path, out);
}

// The start time as a tag stores it: its low 32 bits, never 0 (0 means "unknown").
std::uint32_t start_bits(unsigned long long start) noexcept {
  auto bits = static_cast<std::uint32_t>(start);
  return bits == 0 ? 1u : bits;
}

// True when this process can read /proc (it may be missing in a minimal container). Without it,
// liveness rests on kill(pid, 0) alone: a zombie and a reused pid then count as alive, which
// delays a takeover but never takes a lock from a live holder. access() needs no descriptor, so
// running out of them does not make /proc look missing.
bool proc_available() noexcept {
  static const bool available = ::access("/proc/self/stat", R_OK) == 0;
  return available;
}

// This process's tag; `final` is false when the start time could not be read although /proc is
// there (EMFILE...): the pid-only tag must not be cached then.
std::uint64_t compute_self_tag(bool& final) noexcept {
  auto pid = static_cast<std::uint32_t>(::getpid());
  proc_stat st;
  std::uint32_t start = 0;
  // /proc/self names this process even when /proc belongs to another pid namespace.
  if (read_stat_file("/proc/self/stat", st) == stat_result::found) start = start_bits(st.start);
  final = start != 0 || !proc_available();
  return (static_cast<std::uint64_t>(pid) << 32) | start;
}

std::uint64_t draw_cookie() noexcept {
  std::uint64_t x = 0;
  if (::getrandom(&x, sizeof x, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof x))
    x = static_cast<std::uint64_t>(::getpid()) * 0x9e37'79b9'7f4a'7c15ull ^
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return x | 1;
}

} // namespace

std::uint64_t self_tag() noexcept {
  auto tag = cached_tag.load(std::memory_order_relaxed);
  if (tag != 0) return tag;
  register_fork_handler();
  bool final = false;
  tag = compute_self_tag(final);
  if (final) cached_tag.store(tag, std::memory_order_relaxed);
  return tag;
}

pid_t self_pid() noexcept {
  auto pid = cached_pid.load(std::memory_order_relaxed);
  if (pid != 0) return pid;
  register_fork_handler();
  pid = ::getpid();
  cached_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

pid_t self_tid() noexcept {
  thread_local std::uint32_t generation = 0;
  thread_local pid_t tid = 0;
  auto g = fork_generation.load(std::memory_order_relaxed);
  if (generation != g) {
    register_fork_handler();
    tid = static_cast<pid_t>(::syscall(SYS_gettid));
    generation = g;
  }
  return tid;
}

namespace {

bool is_dead_state(char state) noexcept {
  return state == 'Z' || state == 'X' || state == 'x';
}

} // namespace

namespace {

// kill(pid, 0): false only when no process has the pid (ESRCH); any other failure leaves it
// existing, and EPERM marks it `foreign` (another user's: /proc may hide it, hidepid=2).
bool pid_exists(pid_t pid, bool& foreign) noexcept {
  foreign = false;
  if (::kill(pid, 0) == 0) return true;
  if (errno == ESRCH) return false;
  foreign = errno == EPERM;
  return true;
}

} // namespace

bool pid_alive(pid_t pid) noexcept {
  if (pid <= 0) return false;
  if (pid == self_pid()) return true;
  bool foreign = false;
  if (!pid_exists(pid, foreign)) return false;
  proc_stat st;
  // Only a definite answer from /proc counts: a process hidden by hidepid, or one that /proc
  // cannot be asked about right now (EMFILE...), exists, so it counts as alive.
  switch (read_stat(pid, st)) {
    case stat_result::gone:
      return foreign; // hidden from this user, or exited since kill()
    case stat_result::unknown:
      return true;
    case stat_result::found:
      break;
  }
  return !is_dead_state(st.state);
}

bool process_alive(std::uint64_t tag) noexcept {
  auto pid = tag_pid(tag);
  if (pid <= 0) return false;
  if (is_self(tag)) return true;
  bool foreign = false;
  if (!pid_exists(pid, foreign)) return false;
  proc_stat st;
  switch (read_stat(pid, st)) {
    case stat_result::gone:
      return foreign; // hidden from this user, or exited since kill()
    case stat_result::unknown:
      return true;
    case stat_result::found:
      break;
  }
  if (is_dead_state(st.state)) return false;
  // A pid-only tag cannot tell its process from a later one with the same pid: alive.
  return tag_start(tag) == 0 || start_bits(st.start) == tag_start(tag);
}

std::uint64_t image_cookie() noexcept {
  static const std::uint64_t cookie = draw_cookie();
  return cookie;
}

timeout check_slice(const timeout& t) noexcept {
  auto slice_end = timeout::clock::now() + check_interval;
  if (!t.is_forever() && t.deadline() <= slice_end) return t;
  return timeout{slice_end};
}

// -- robust_word --------------------------------------------------------------------------------

bool robust_word::holder_dead(std::uint32_t seen) const noexcept {
  auto pid = static_cast<pid_t>(seen & pid_mask);
  auto tag = holder_.load(std::memory_order_acquire);
  // A published tag is compared in full (pid and start time), also against this process: a
  // holder that died with the pid this process reuses is dead.
  if (tag_pid(tag) == pid) return !process_alive(tag);
  // A tag of another pid (or none) means the holder has not published its own yet: only the pid
  // can be checked then (see the file comment). With this process's pid it is one of its own
  // threads between taking the word and publishing.
  if (pid == self_pid()) return false;
  return !pid_alive(pid);
}

bool robust_word::take_over(std::uint32_t seen) noexcept {
  // Keep the waiters bit: other lockers may still sleep on the word.
  auto mine = static_cast<std::uint32_t>(self_pid()) | waiters_bit;
  if (!word_.compare_exchange_strong(seen, mine, std::memory_order_acq_rel,
                                     std::memory_order_relaxed))
    return false;
  holder_.store(self_tag(), std::memory_order_release);
  return true;
}

lock_result robust_word::try_lock_slow(std::uint32_t seen) noexcept {
  for (;;) {
    if (seen == not_recoverable_value) return lock_result::not_recoverable;
    if (seen == 0) {
      if (word_.compare_exchange_strong(seen, static_cast<std::uint32_t>(self_pid()),
                                        std::memory_order_acq_rel, std::memory_order_relaxed)) {
        holder_.store(self_tag(), std::memory_order_release);
        return lock_result::acquired;
      }
      continue;
    }
    if (!holder_dead(seen)) return lock_result::timed_out;
    if (take_over(seen)) return lock_result::owner_died;
    seen = word_.load(std::memory_order_acquire);
  }
}

lock_result robust_word::lock(const timeout& t, const std::stop_token* st) noexcept {
  auto self = static_cast<std::uint32_t>(self_pid());
  // A short spin: a holder that releases within a microsecond or so costs no sleep.
  for (int i = 0; i < 100; ++i) {
    auto v = word_.load(std::memory_order_relaxed);
    if (v == 0) {
      if (word_.compare_exchange_weak(v, self, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
        holder_.store(self_tag(), std::memory_order_release);
        return lock_result::acquired;
      }
    } else if (v == not_recoverable_value) {
      return lock_result::not_recoverable;
    }
    tandem::detail::cpu_relax();
  }
  // When the last liveness check ran (or the wait began); and whether this thread slept, so that
  // it may have consumed a wake-up meant for a locker.
  auto last_check = timeout::clock::now();
  bool slept = false;
  // Leaving without the word after a sleep: an unlock's single wake-up may have been ours; pass it
  // on when the word is free.
  auto leave = [this, &slept]() noexcept {
    if (slept && word_.load(std::memory_order_acquire) == 0)
      tandem::detail::futex_wake(word_, 1, true);
    return lock_result::timed_out;
  };
  for (;;) {
    auto v = word_.load(std::memory_order_acquire);
    if (v == not_recoverable_value) return lock_result::not_recoverable;
    if (v == 0) {
      // Taken with the waiters bit: others may still sleep (as in Drepper's mutex).
      if (word_.compare_exchange_strong(v, self | waiters_bit, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
        holder_.store(self_tag(), std::memory_order_release);
        return lock_result::acquired;
      }
      continue;
    }
    if ((v & waiters_bit) == 0) {
      if (!word_.compare_exchange_strong(v, v | waiters_bit, std::memory_order_acq_rel,
                                         std::memory_order_relaxed))
        continue;
      v |= waiters_bit;
    }
    if (st != nullptr && st->stop_requested()) return leave();
    if (!t.is_forever() && t.expired()) {
      // The deadline passed: one last look for a dead holder, as a try would.
      if (holder_dead(v) && take_over(v)) return lock_result::owner_died;
      return leave();
    }
    auto slice = check_slice(t);
    bool woken = st != nullptr ? tandem::detail::futex_wait(word_, v, slice, *st, true)
                               : tandem::detail::futex_wait(word_, v, slice, true);
    slept = true;
    // A slice's worth of time since the last check (however the wait ended: a polling fallback
    // reports no timeouts): is the holder still there?
    auto now = timeout::clock::now();
    if (!woken || now - last_check >= check_interval) {
      last_check = now;
      auto cur = word_.load(std::memory_order_acquire);
      if (cur != 0 && cur != not_recoverable_value && holder_dead(cur) && take_over(cur))
        return lock_result::owner_died;
    }
  }
}

unlock_result robust_word::unlock() noexcept {
  auto v = word_.load(std::memory_order_relaxed);
  for (;;) {
    if (v == 0) return unlock_result::was_free;
    if (v == not_recoverable_value) return unlock_result::not_recoverable;
    holder_.store(0, std::memory_order_relaxed);
    if (word_.compare_exchange_weak(v, 0, std::memory_order_release, std::memory_order_relaxed))
      break;
  }
  if ((v & waiters_bit) != 0) tandem::detail::futex_wake(word_, 1, true);
  return unlock_result::unlocked;
}

void robust_word::mark_not_recoverable() noexcept {
  holder_.store(0, std::memory_order_relaxed);
  word_.store(not_recoverable_value, std::memory_order_release);
  tandem::detail::futex_wake_all(word_, true);
}

} // namespace tandem::mp::detail
