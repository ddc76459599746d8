// mp::shared_memory and the named-segment helpers shared with the tracker and `tandem shm`.
// See <tandem/mp/shared_memory.hpp> and <tandem/mp/detail/shm_named.hpp> for the contracts.
#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/detail/shm_named.hpp>
#include <tandem/mp/detail/shm_tracker.hpp>
#include <tandem/mp/shared_memory.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace tandem::mp {

namespace {

using detail::shm_named_header;
using detail::shm_named_header_size;
using detail::shm_path;
using detail::shm_quoted;
using detail::throw_shm_error;

class fd_guard {
public:
  explicit fd_guard(int fd) noexcept : fd_(fd) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }

private:
  int fd_;
};

std::uint64_t boottime_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

void check_size(std::size_t size) {
  if (size == 0)
    throw value_error("a shared-memory segment's size must be a positive number different from "
                      "zero; ask for at least one byte");
  constexpr auto limit =
      static_cast<std::size_t>(std::numeric_limits<off_t>::max()) - shm_named_header_size;
  if (size > limit)
    throw value_error("a shared-memory segment of " + std::to_string(size) +
                      " bytes cannot be mapped; ask for fewer bytes");
}

// This process's start time, read once per process (a fork child reads its own).
std::uint64_t own_start_time() {
  static std::atomic<pid_t> cached_pid{0};
  static std::atomic<std::uint64_t> cached{0};
  pid_t self = ::getpid();
  if (cached_pid.load(std::memory_order_acquire) == self)
    return cached.load(std::memory_order_relaxed);
  std::uint64_t t = detail::process_start_time(self).value_or(0);
  cached.store(t, std::memory_order_relaxed);
  cached_pid.store(self, std::memory_order_release);
  return t;
}

// The segment's header, then the user's bytes.
shm_named_header* header_of(std::byte* base) noexcept {
  return std::launder(reinterpret_cast<shm_named_header*>(base));
}

} // namespace

// -- construction -------------------------------------------------------------------------------

shared_memory::shared_memory(std::string name, std::byte* base, std::size_t size,
                             std::uint64_t inode, std::uint64_t device, pid_t owner,
                             bool tracked) noexcept
    : name_(std::move(name)), base_(base), data_(base + shm_named_header_size), size_(size),
      inode_(inode), device_(device), owner_pid_(owner), tracked_by_(tracked ? ::getpid() : 0) {}

shared_memory shared_memory::create(std::size_t size, const shared_memory_options& options) {
  check_size(size);
  // 64 random bits make a collision unlikely, not impossible: try again on one, as Python does.
  for (int attempt = 0;; ++attempt) {
    try {
      return create(detail::generate_shm_name(), size, options);
    } catch (const segment_error& e) {
      if (e.errno_value() != EEXIST || attempt >= 16) throw;
    }
  }
}

shared_memory shared_memory::create(std::string_view name, std::size_t size,
                                    const shared_memory_options& options) {
  detail::check_shm_name(name);
  check_size(size);
  // Start the tracker first, so that no fork sits between shm_open and the registration: a
  // creator killed in that window leaves an empty file that only its name ties to tandem.
  if (options.track) detail::shm_tracker_start();
  const std::size_t total = shm_named_header_size + size;
  std::string path = shm_path(name);
  // O_EXCL: never adopt an existing segment. glibc adds O_NOFOLLOW and O_CLOEXEC.
  fd_guard fd{::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, S_IRUSR | S_IWUSR)};
  if (fd.get() < 0) {
    int err = errno;
    if (err == EEXIST)
      throw_shm_error(err, "cannot create shared-memory segment " + shm_quoted(name) +
                               ": a segment of that name exists; choose another name, attach to "
                               "it, or unlink it");
    throw_shm_error(err, "cannot create shared-memory segment " + shm_quoted(name) + " (shm_open)");
  }
  // From here on the name is ours: any failure removes it again.
  bool registered = false;
  struct stat st {};
  auto fail = [&](int err, const std::string& what) {
    ::shm_unlink(path.c_str());
    if (registered) detail::shm_tracker_unregister(name, st.st_ino, st.st_dev);
    throw_shm_error(err, "cannot create shared-memory segment " + shm_quoted(name) + ": " + what);
  };
  if (::fstat(fd.get(), &st) != 0) fail(errno, "fstat failed");
  if (options.track) {
    try {
      detail::shm_tracker_register(name, st.st_ino, st.st_dev);
      registered = true;
    } catch (const segment_error& e) {
      fail(e.errno_value(), e.what());
    }
  }
  // The umask may have taken bits from the mode, never added any; set exactly 0600 anyway.
  if (::fchmod(fd.get(), S_IRUSR | S_IWUSR) != 0) fail(errno, "fchmod failed");
  if (::ftruncate(fd.get(), static_cast<off_t>(total)) != 0)
    fail(errno, "cannot size it to " + std::to_string(total) +
                    " bytes (ftruncate); /dev/shm may be full, or ask for fewer bytes");
  void* mem = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (mem == MAP_FAILED) fail(errno, "cannot map " + std::to_string(total) + " bytes (mmap)");
  auto* base = static_cast<std::byte*>(mem);
  // ftruncate zero-filled the file: the ready flag is 0 until the header is complete.
  auto* h = header_of(base);
  // The owner first and the magic number last: a reader that sees the magic (the tool deciding
  // whether a segment is stale) also sees who owns it.
  h->user_size = size;
  h->owner_pid = ::getpid();
  h->owner_uid = ::geteuid();
  h->owner_start_time = own_start_time();
  h->created_boot_ns = boottime_ns();
  h->version = detail::shm_named_version;
  std::atomic_ref<std::uint64_t>{h->magic}.store(detail::shm_named_magic,
                                                 std::memory_order_release);
  h->ready.store(detail::shm_named_ready, std::memory_order_release);
  tandem::detail::futex_wake_all(h->ready, true);
  return shared_memory{std::string{name}, base,         size,         st.st_ino,
                       st.st_dev,         h->owner_pid, options.track};
}

shared_memory shared_memory::attach(std::string_view name) {
  if (name.empty())
    throw value_error("cannot attach a shared-memory segment without a name; pass the name its "
                      "creator's name() returned");
  detail::check_shm_name(name);
  std::string path = shm_path(name);
  fd_guard fd{::shm_open(path.c_str(), O_RDWR, 0)};
  if (fd.get() < 0) {
    int err = errno;
    if (err == ENOENT)
      throw_shm_error(err,
                      "cannot attach shared-memory segment " + shm_quoted(name) +
                          ": no segment has that name (it was never created, or was unlinked)");
    throw_shm_error(err, "cannot attach shared-memory segment " + shm_quoted(name) + " (shm_open)");
  }
  const std::string what = "cannot attach shared-memory segment " + shm_quoted(name) + ": ";
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_shm_error(errno, what + "fstat failed");
  if (st.st_uid != ::geteuid())
    throw_shm_error(EACCES, what + "it belongs to user " + std::to_string(st.st_uid) +
                                ", not to this user (" + std::to_string(::geteuid()) +
                                "); only segments of one's own user are attached");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw_shm_error(EACCES, what + "other users may write to it (mode " + mode +
                                "); tandem creates segments with mode 0600 and attaches no others");
  }
  if (!S_ISREG(st.st_mode)) throw_shm_error(EINVAL, what + "it is not a regular file");

  const tandem::timeout deadline{init_wait};
  // A creator sizes the file right after creating it; the kernel offers no way to wait for a
  // file's size, so poll it, backing off, within the same bounded wait as the ready flag.
  auto backoff = std::chrono::microseconds{50};
  while (static_cast<std::uint64_t>(st.st_size) < shm_named_header_size) {
    if (deadline.expired())
      throw_shm_error(ETIMEDOUT,
                      what + "it has " + std::to_string(st.st_size) +
                          " bytes, too few for a tandem segment, and did not grow within " +
                          std::to_string(init_wait.count()) +
                          " ms: its creator died while making it, or it is not tandem's");
    std::this_thread::sleep_for(std::min(
        backoff, std::chrono::duration_cast<std::chrono::microseconds>(deadline.remaining())));
    backoff = std::min(backoff * 2, std::chrono::microseconds{10'000});
    if (::fstat(fd.get(), &st) != 0) throw_shm_error(errno, what + "fstat failed");
  }
  const auto total = static_cast<std::size_t>(st.st_size);
  void* mem = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (mem == MAP_FAILED)
    throw_shm_error(errno, what + "mmap of " + std::to_string(total) + " bytes failed");
  auto* base = static_cast<std::byte*>(mem);
  auto refuse = [&](int err, const std::string& why) {
    ::munmap(base, total);
    throw_shm_error(err, what + why);
  };
  auto* h = header_of(base);
  // Wait (futex, bounded) for the creator to finish the header. A magic number that is set and
  // wrong says at once that this is no tandem segment.
  for (;;) {
    std::uint32_t r = h->ready.load(std::memory_order_acquire);
    if (r == detail::shm_named_ready) break;
    if (h->magic != 0 && h->magic != detail::shm_named_magic)
      refuse(EINVAL, "it is not a tandem shared-memory segment (wrong magic number)");
    if (!tandem::detail::futex_wait(h->ready, r, deadline, true)) {
      if (h->ready.load(std::memory_order_acquire) == detail::shm_named_ready) break;
      refuse(ETIMEDOUT, "its creator did not finish initialising it within " +
                            std::to_string(init_wait.count()) +
                            " ms: it died while making it; unlink the segment (tandem shm rm "
                            "--stale removes it once its creator is dead)");
    }
  }
  if (h->magic != detail::shm_named_magic)
    refuse(EINVAL, "it is not a tandem shared-memory segment (wrong magic number)");
  if (h->version != detail::shm_named_version)
    refuse(EINVAL, "it has layout version " + std::to_string(h->version) +
                       ", this program reads version " + std::to_string(detail::shm_named_version) +
                       "; build both programs with one tandem");
  if (h->user_size != total - shm_named_header_size)
    refuse(EINVAL, "its header says " + std::to_string(h->user_size) +
                       " bytes but the file holds " +
                       std::to_string(total - shm_named_header_size) + ": it is corrupt");
  return shared_memory{
      std::string{name}, base, static_cast<std::size_t>(h->user_size), st.st_ino, st.st_dev,
      h->owner_pid,      false};
}

shared_memory::shared_memory(shared_memory&& other) noexcept
    : name_(std::move(other.name_)), base_(std::exchange(other.base_, nullptr)),
      data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      inode_(std::exchange(other.inode_, 0)), device_(std::exchange(other.device_, 0)),
      owner_pid_(std::exchange(other.owner_pid_, 0)),
      tracked_by_(std::exchange(other.tracked_by_, 0)) {
  other.name_.clear();
}

shared_memory& shared_memory::operator=(shared_memory&& other) noexcept {
  if (this != &other) {
    close();
    name_ = std::move(other.name_);
    other.name_.clear();
    base_ = std::exchange(other.base_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    inode_ = std::exchange(other.inode_, 0);
    device_ = std::exchange(other.device_, 0);
    owner_pid_ = std::exchange(other.owner_pid_, 0);
    tracked_by_ = std::exchange(other.tracked_by_, 0);
  }
  return *this;
}

shared_memory::~shared_memory() {
  close();
}

// -- observers ----------------------------------------------------------------------------------

bool shared_memory::owned() const noexcept {
  return tracked_by_ != 0 && tracked_by_ == ::getpid() &&
         detail::shm_tracker_owns(name_, inode_, device_);
}

// -- closing and removing -----------------------------------------------------------------------

void shared_memory::close() noexcept {
  if (base_ != nullptr) ::munmap(base_, shm_named_header_size + size_);
  base_ = nullptr;
  data_ = nullptr;
}

void shared_memory::unlink() {
  if (name_.empty())
    throw segment_error(ENOENT, "cannot unlink: this shared_memory handle has no segment (it "
                                "was default-constructed or moved from)");
  std::string path = shm_path(name_);
  // Once the name of this file is gone (unlinked through any handle, or by anyone else), this
  // process owns nothing more under it, whichever of its handles created it.
  auto disown = [this] {
    detail::shm_tracker_unregister(name_, inode_, device_);
    tracked_by_ = 0;
  };
  // The name may have been unlinked and given to a new segment since: leave that one alone.
  struct stat st {};
  std::string file = detail::shm_directory + name_;
  if (::stat(file.c_str(), &st) == 0 && (static_cast<std::uint64_t>(st.st_ino) != inode_ ||
                                         static_cast<std::uint64_t>(st.st_dev) != device_)) {
    disown();
    throw_shm_error(ENOENT, "cannot unlink shared-memory segment " + shm_quoted(name_) +
                                ": it was already unlinked, and its name now belongs to another "
                                "segment");
  }
  if (::shm_unlink(path.c_str()) != 0) {
    int err = errno;
    if (err == ENOENT) {
      disown();
      throw_shm_error(err, "cannot unlink shared-memory segment " + shm_quoted(name_) +
                               ": it was already unlinked");
    }
    throw_shm_error(err,
                    "cannot unlink shared-memory segment " + shm_quoted(name_) + " (shm_unlink)");
  }
  disown();
}

// -- named-segment helpers ----------------------------------------------------------------------

namespace detail {

std::string shm_path(std::string_view name) {
  // Built by appending: GCC 12 at -O3 warns (-Wrestrict) on "literal" + std::string.
  std::string out;
  out.reserve(name.size() + 1);
  out += '/';
  out += name;
  return out;
}

std::string shm_quoted(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out += '"';
  out += name;
  out += '"';
  return out;
}

void throw_shm_error(int err, const std::string& what) {
  throw segment_error(err, what + " (" + std::strerror(err) + ")");
}

void check_shm_name(std::string_view name) {
  auto bad = [&](const std::string& why) {
    throw segment_error(EINVAL,
                        "invalid shared-memory segment name " + shm_quoted(name) + ": " + why);
  };
  if (name.empty()) bad("it is empty; give a name, or let create() generate one");
  if (name.size() > shm_name_max)
    bad("it has " + std::to_string(name.size()) + " bytes, at most " +
        std::to_string(shm_name_max) + " are allowed");
  if (name.find('/') != std::string_view::npos)
    bad("it contains '/'; give the name without a leading slash");
  if (name.find('\0') != std::string_view::npos) bad("it contains a NUL character");
  if (name == "." || name == "..") bad("\".\" and \"..\" are not names");
}

std::string generate_shm_name() {
  std::uint64_t bits = 0;
  auto* p = reinterpret_cast<unsigned char*>(&bits);
  std::size_t got = 0;
  while (got < sizeof bits) {
    ssize_t n = ::getrandom(p + got, sizeof bits - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_shm_error(errno, "cannot generate a shared-memory segment name (getrandom)");
    }
    got += static_cast<std::size_t>(n);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016" PRIx64, bits);
  return std::string{shm_generated_prefix} + hex;
}

std::optional<std::uint64_t> process_start_time(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name is in parentheses and may contain anything, ')' and spaces included: the
  // fields resume after the last ')'. Field 3 is the state, field 22 the start time.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::size_t pos = close + 1;
  int field = 2;
  std::string_view rest{line};
  char state = '?';
  while (pos < rest.size()) {
    while (pos < rest.size() && rest[pos] == ' ') ++pos;
    auto end = rest.find(' ', pos);
    if (end == std::string_view::npos) end = rest.size();
    ++field;
    auto token = rest.substr(pos, end - pos);
    if (field == 3 && !token.empty()) state = token[0];
    if (field == 22) {
      if (state == 'Z' || state == 'X') return std::nullopt;
      std::uint64_t v = 0;
      for (char c : token) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
      }
      return v;
    }
    pos = end;
  }
  return std::nullopt;
}

bool process_alive(pid_t pid, std::uint64_t start_time) {
  if (pid <= 0) return false;
  // A start time of 0 means the creator could not read its own: then only the pid is checked.
  if (auto t = process_start_time(pid)) return start_time == 0 || *t == start_time;
  // No readable stat file: gone, a zombie, or hidden from this user (hidepid).
  if (::kill(pid, 0) == 0) {
    // It exists. A zombie has no start time to read only when /proc hides it; then it counts
    // as alive, the safe side.
    std::string stat_path = "/proc/" + std::to_string(pid) + "/stat";
    return ::access(stat_path.c_str(), F_OK) != 0;
  }
  return errno == EPERM;
}

std::optional<shm_segment_info> inspect_shm_segment(std::string_view name) {
  if (name.empty() || name.size() > shm_name_max || name.find('/') != std::string_view::npos)
    return std::nullopt;
  std::string path = shm_directory + std::string{name};
  // Read only, never following a link, never blocking on a FIFO someone left there.
  fd_guard fd{::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)};
  if (fd.get() < 0) return std::nullopt;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::uint64_t>(st.st_size) < shm_named_header_size)
    return std::nullopt;
  // A plain read of the fields: a header being written reads as not ready.
  struct raw_header {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t ready;
    std::uint64_t user_size;
    std::int32_t owner_pid;
    std::uint32_t owner_uid;
    std::uint64_t owner_start_time;
    std::uint64_t created_boot_ns;
  } raw{};
  static_assert(sizeof(raw_header) == sizeof(shm_named_header));
  if (::pread(fd.get(), &raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw))
    return std::nullopt;
  if (raw.magic != shm_named_magic) return std::nullopt;
  shm_segment_info info;
  info.name = std::string{name};
  info.owner_pid = raw.owner_pid;
  info.owner_start_time = raw.owner_start_time;
  info.file_uid = st.st_uid;
  info.user_size = raw.user_size;
  info.created_boot_ns = raw.created_boot_ns;
  info.version = raw.version;
  info.ready = raw.ready == shm_named_ready;
  info.owner_alive = process_alive(raw.owner_pid, raw.owner_start_time);
  info.inode = st.st_ino;
  info.device = st.st_dev;
  return info;
}

std::vector<shm_segment_info> list_shm_segments(std::string_view prefix) {
  std::vector<shm_segment_info> out;
  DIR* dir = ::opendir(shm_directory);
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    std::string_view n{e->d_name};
    if (n == "." || n == ".." || !n.starts_with(prefix)) continue;
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
    if (auto info = inspect_shm_segment(n)) out.push_back(std::move(*info));
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

int remove_stale_shm_segment(const shm_segment_info& info, bool* removed) {
  *removed = false;
  // Look again: the file may have changed since it was listed.
  auto now = inspect_shm_segment(info.name);
  if (!now || now->inode != info.inode || now->device != info.device || now->owner_alive) return 0;
  std::string path = shm_directory + info.name;
  if (::unlink(path.c_str()) != 0) return errno == ENOENT ? 0 : errno;
  *removed = true;
  return 0;
}

} // namespace detail

} // namespace tandem::mp
