// The segment tracker: one process per owning process that unlinks the owner's segments once the
// owner is gone. See <tandem/mp/detail/shm_tracker.hpp> for the contract.
//
// Why a grandchild: a child would show up in the owner's waitpid(-1), in tests that wait for
// "any child", and in process machinery that reaps or kills its children; a grandchild is
// reparented to init (or the nearest subreaper) at once and is nobody's child here.
//
// Why only system calls in the tracker: it is forked (with _Fork, so no atfork handler runs) from
// a process that may have other threads, whose locks (malloc's, stdio's, ours) may be held at the
// moment of the fork and stay held forever in the copy. Its table of names lives in anonymous
// mmap'd memory it grows with mremap; it formats nothing and allocates nothing.
//
// Protocol (SOCK_SEQPACKET, one message per datagram, so no framing):
//   tracker -> owner, once:  'H' pid(4)
//   owner -> tracker:        'R' inode(8) device(8) name    register
//                            'U' name                       unregister
// End of file from the owner ends the tracker, after it unlinks what is registered.
#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/detail/shm_named.hpp>
#include <tandem/mp/detail/shm_tracker.hpp>

#include "internal/no_destroy.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace tandem::mp::detail {

namespace {

using namespace std::chrono_literals;

constexpr std::size_t max_message = 1 + 16 + shm_name_max;

// -- the tracker process ------------------------------------------------------------------------

struct tracked_name {
  std::uint64_t inode;
  std::uint64_t device;
  std::size_t length;
  char name[shm_name_max + 1];
};

// The tracker's table, in anonymous memory (no malloc in the tracker).
struct tracker_table {
  tracked_name* items = nullptr;
  std::size_t count = 0;
  std::size_t capacity = 0;

  bool grow() noexcept {
    std::size_t next = capacity == 0 ? 64 : capacity * 2;
    void* mem = items == nullptr
                    ? ::mmap(nullptr, next * sizeof(tracked_name), PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                    : ::mremap(items, capacity * sizeof(tracked_name), next * sizeof(tracked_name),
                               MREMAP_MAYMOVE);
    if (mem == MAP_FAILED) return false;
    items = static_cast<tracked_name*>(mem);
    capacity = next;
    return true;
  }

  tracked_name* find(const char* name, std::size_t length) noexcept {
    for (std::size_t i = 0; i < count; ++i)
      if (items[i].length == length && std::memcmp(items[i].name, name, length) == 0)
        return &items[i];
    return nullptr;
  }

  void add(const char* name, std::size_t length, std::uint64_t inode,
           std::uint64_t device) noexcept {
    tracked_name* slot = find(name, length);
    if (slot == nullptr) {
      if (count == capacity && !grow()) return;
      slot = &items[count++];
    }
    slot->inode = inode;
    slot->device = device;
    slot->length = length;
    std::memcpy(slot->name, name, length);
    slot->name[length] = '\0';
  }

  void remove(const char* name, std::size_t length) noexcept {
    if (tracked_name* slot = find(name, length)) *slot = items[--count];
  }
};

// Unlinks /dev/shm/<name> if it is still the file that was registered.
void unlink_if_same(const tracked_name& t) noexcept {
  constexpr std::size_t dir_len = std::char_traits<char>::length(shm_directory);
  char path[dir_len + shm_name_max + 1];
  std::memcpy(path, shm_directory, dir_len);
  std::memcpy(path + dir_len, t.name, t.length + 1);
  struct stat st {};
  if (::lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) return;
  if (static_cast<std::uint64_t>(st.st_ino) != t.inode ||
      static_cast<std::uint64_t>(st.st_dev) != t.device)
    return;
  ::unlink(path);
}

void close_all_but(int keep) noexcept {
  auto close_from = [](unsigned first, unsigned last) {
    if (first > last) return;
    if (::close_range(first, last, 0) == 0) return;
    rlimit rl{};
    unsigned top = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                       ? static_cast<unsigned>(std::min<rlim_t>(rl.rlim_cur, 1u << 20))
                       : 65536u;
    for (unsigned fd = first; fd <= last && fd < top; ++fd) ::close(static_cast<int>(fd));
  };
  auto k = static_cast<unsigned>(keep);
  close_from(3, k - 1);
  close_from(k + 1, ~0u);
}

[[noreturn]] void tracker_main(int inherited) noexcept {
  // Signals: nothing of the owner's handlers, nothing blocked; a Ctrl-C or a SIGTERM meant for
  // the owner's process group must not stop the cleanup (Python's tracker ignores them too).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) ::sigaction(s, &dfl, nullptr);
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) ::sigaction(s, &ign, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  // Descriptors: keep the connection (at 3 or above), close everything else the owner had open
  // (its pipes, sockets and its own end of this connection), and point 0-2 at /dev/null.
  int sock = ::fcntl(inherited, F_DUPFD_CLOEXEC, 3);
  if (sock < 0) ::_exit(1);
  close_all_but(sock);
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    for (int fd = 0; fd <= 2; ++fd)
      if (fd != null) ::dup2(null, fd);
    if (null > 2) ::close(null);
  }
  if (::chdir("/") != 0) { /* the tracker uses absolute paths only */
  }
  ::prctl(PR_SET_NAME, "tandem-shm-trk", 0, 0, 0);

  char hello[5] = {'H'};
  pid_t self = ::getpid();
  std::memcpy(hello + 1, &self, sizeof self);
  if (::send(sock, hello, sizeof hello, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof hello))
    ::_exit(1);

  tracker_table table;
  char msg[max_message];
  for (;;) {
    ssize_t n = ::recv(sock, msg, sizeof msg, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; // end of file: the owner is gone (or the socket failed)
    auto len = static_cast<std::size_t>(n);
    if (msg[0] == 'R' && len > 17 && len - 17 <= shm_name_max) {
      std::uint64_t inode = 0;
      std::uint64_t device = 0;
      std::memcpy(&inode, msg + 1, 8);
      std::memcpy(&device, msg + 9, 8);
      table.add(msg + 17, len - 17, inode, device);
    } else if (msg[0] == 'U' && len > 1) {
      table.remove(msg + 1, len - 1);
    }
  }
  for (std::size_t i = 0; i < table.count; ++i) unlink_if_same(table.items[i]);
  ::_exit(0);
}

// -- the owner's side ---------------------------------------------------------------------------

struct owned_name {
  std::string name;
  std::uint64_t inode;
  std::uint64_t device;
};

struct tracker_client {
  std::mutex mtx;
  int fd = -1;                   // guarded by mtx: the connection, close-on-exec
  pid_t tracker = 0;             // guarded by mtx
  pid_t self = 0;                // guarded by mtx: the process this state belongs to
  std::vector<owned_name> owned; // guarded by mtx
};

tracker_client& the_client();

void before_fork() noexcept {
  the_client().mtx.lock();
}
void after_fork_in_parent() noexcept {
  the_client().mtx.unlock();
}
// The parent's tracker is not the child's: a copy of the connection here would keep the parent's
// tracker from seeing end of file when the parent dies. The child owns nothing yet.
void after_fork_in_child() noexcept {
  auto& c = the_client();
  if (c.fd >= 0) ::close(c.fd);
  c.fd = -1;
  c.tracker = 0;
  c.self = ::getpid();
  c.owned.clear();
  c.mtx.unlock();
}

tracker_client& the_client() {
  static internal::no_destroy<tracker_client> client;
  static const bool installed = [] {
    ::pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
    return true;
  }();
  (void)installed;
  return client.get();
}

// A child made without the atfork handlers (clone, _Fork) finds its parent's state: drop it.
void adopt_locked(tracker_client& c) noexcept {
  pid_t self = ::getpid();
  if (c.self == self) return;
  if (c.self != 0 && c.fd >= 0) ::close(c.fd);
  if (c.self != 0) {
    c.fd = -1;
    c.tracker = 0;
    c.owned.clear();
  }
  c.self = self;
}

void disconnect_locked(tracker_client& c) noexcept {
  if (c.fd >= 0) ::close(c.fd);
  c.fd = -1;
  c.tracker = 0;
}

bool connected_locked(tracker_client& c) noexcept {
  if (c.fd < 0) return false;
  pollfd p{c.fd, POLLIN, 0};
  if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLIN)) != 0) {
    // The tracker sends nothing after its greeting: any event means it is gone.
    disconnect_locked(c);
    return false;
  }
  return true;
}

bool send_register(int fd, const owned_name& o) noexcept {
  char msg[max_message];
  msg[0] = 'R';
  std::memcpy(msg + 1, &o.inode, 8);
  std::memcpy(msg + 9, &o.device, 8);
  std::memcpy(msg + 17, o.name.data(), o.name.size());
  auto len = 17 + o.name.size();
  return ::send(fd, msg, len, MSG_NOSIGNAL) == static_cast<ssize_t>(len);
}

[[noreturn]] void throw_start(int err, const std::string& why) {
  throw segment_error(err, "cannot start the shared-memory tracker, which removes this "
                           "process's segments when it dies: " +
                               why + " (" + std::strerror(err) + ")");
}

// Starts a tracker and registers every name this process owns with it.
void launch_locked(tracker_client& c) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    throw_start(errno, "socketpair failed");
  pid_t middle = ::_Fork();
  if (middle < 0) {
    int err = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    throw_start(err, "fork failed");
  }
  if (middle == 0) {
    pid_t grandchild = ::_Fork();
    if (grandchild == 0) tracker_main(sv[1]);
    ::_exit(grandchild < 0 ? 1 : 0);
  }
  ::close(sv[1]);
  int status = 0;
  while (::waitpid(middle, &status, __WALL) < 0 && errno == EINTR) {
  }
  // (ECHILD: something else in this program reaped it, or SIGCHLD is ignored; the greeting
  // below says whether the tracker runs.)
  pollfd p{sv[0], POLLIN, 0};
  int ready = tandem::detail::ppoll_until(&p, 1, tandem::timeout{5s});
  if (ready <= 0) {
    int err = ready == 0 ? ETIMEDOUT : errno;
    ::close(sv[0]);
    throw_start(err, "it did not answer");
  }
  char hello[8];
  ssize_t n = ::recv(sv[0], hello, sizeof hello, 0);
  if (n != 5 || hello[0] != 'H') {
    int err = n < 0 ? errno : ECHILD;
    ::close(sv[0]);
    throw_start(err, "it exited before answering");
  }
  pid_t pid = 0;
  std::memcpy(&pid, hello + 1, sizeof pid);
  c.fd = sv[0];
  c.tracker = pid;
  for (const auto& o : c.owned) {
    if (!send_register(c.fd, o)) {
      int err = errno;
      disconnect_locked(c);
      throw_start(err, "it stopped while being told this process's segments");
    }
  }
}

void ensure_locked(tracker_client& c) {
  adopt_locked(c);
  if (!connected_locked(c)) launch_locked(c);
}

} // namespace

void shm_tracker_start() {
  auto& c = the_client();
  std::lock_guard guard{c.mtx};
  ensure_locked(c);
}

void shm_tracker_register(std::string_view name, std::uint64_t inode, std::uint64_t device) {
  auto& c = the_client();
  std::lock_guard guard{c.mtx};
  adopt_locked(c);
  owned_name entry{std::string{name}, inode, device};
  auto it = std::find_if(c.owned.begin(), c.owned.end(),
                         [&](const owned_name& o) { return o.name == name; });
  if (it != c.owned.end())
    *it = entry;
  else
    c.owned.push_back(entry);
  try {
    if (connected_locked(c) && send_register(c.fd, entry)) return;
    // The tracker is gone: a new one learns every owned name, this one included.
    disconnect_locked(c);
    launch_locked(c);
  } catch (...) {
    c.owned.erase(std::remove_if(c.owned.begin(), c.owned.end(),
                                 [&](const owned_name& o) { return o.name == name; }),
                  c.owned.end());
    throw;
  }
}

void shm_tracker_unregister(std::string_view name, std::uint64_t inode,
                            std::uint64_t device) noexcept {
  if (name.empty() || name.size() > shm_name_max) return;
  auto& c = the_client();
  std::lock_guard guard{c.mtx};
  adopt_locked(c);
  auto it = std::find_if(c.owned.begin(), c.owned.end(), [&](const owned_name& o) {
    return o.name == name && o.inode == inode && o.device == device;
  });
  if (it == c.owned.end()) return;
  c.owned.erase(it);
  if (c.fd < 0) return;
  char msg[max_message];
  msg[0] = 'U';
  std::memcpy(msg + 1, name.data(), name.size());
  auto len = 1 + name.size();
  // A failed send means the tracker is gone; the next register starts another.
  if (::send(c.fd, msg, len, MSG_NOSIGNAL) != static_cast<ssize_t>(len)) disconnect_locked(c);
}

bool shm_tracker_owns(std::string_view name, std::uint64_t inode, std::uint64_t device) noexcept {
  auto& c = the_client();
  std::lock_guard guard{c.mtx};
  adopt_locked(c);
  return std::any_of(c.owned.begin(), c.owned.end(), [&](const owned_name& o) {
    return o.name == name && o.inode == inode && o.device == device;
  });
}

pid_t shm_tracker_pid() noexcept {
  auto& c = the_client();
  std::lock_guard guard{c.mtx};
  adopt_locked(c);
  return connected_locked(c) ? c.tracker : 0;
}

std::vector<std::string> shm_tracker_owned() {
  auto& c = the_client();
  std::lock_guard guard{c.mtx};
  adopt_locked(c);
  std::vector<std::string> out;
  out.reserve(c.owned.size());
  for (const auto& o : c.owned) out.push_back(o.name);
  return out;
}

} // namespace tandem::mp::detail
