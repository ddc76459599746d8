// tandem::mp::connection and tandem::mp::pipe: framed byte messages over a socket or a pipe.
#include <tandem/detail/futex.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/pipe.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <ctime>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stop_token>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace tandem::mp {

namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw error(std::error_code(err, std::system_category()), what);
}

// Blocks SIGPIPE in the calling thread for the lifetime of the guard and swallows a SIGPIPE that
// the guarded write raised, so writing to a pipe whose reader is gone fails with EPIPE instead of
// killing the process. A SIGPIPE that was already pending before is left alone.
class sigpipe_guard {
public:
  sigpipe_guard() noexcept {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_) == 0;
  }

  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;

  // Called after a write failed with EPIPE: consumes the SIGPIPE it raised, if any.
  void consume() noexcept {
    if (was_pending_) return;
    timespec zero{0, 0};
    while (sigtimedwait(&pipe_set_, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }

  ~sigpipe_guard() {
    if (blocked_) pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

private:
  sigset_t pipe_set_{};
  sigset_t old_{};
  bool was_pending_ = false;
  bool blocked_ = false;
};

} // namespace

// -- construction -----------------------------------------------------------------------------

connection::connection(int fd, bool readable, bool writable)
    : fd_(fd), readable_(readable), writable_(writable) {
  if (fd < 0) throw value_error("connection: invalid file descriptor " + std::to_string(fd));
  if (!readable && !writable) {
    ::close(fd);
    fd_ = -1;
    throw value_error("connection: at least one of readable and writable must be true");
  }
  struct stat st {};
  socket_ = ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

connection::connection(connection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), readable_(other.readable_), writable_(other.writable_),
      socket_(other.socket_), broken_(other.broken_), max_message_size_(other.max_message_size_) {}

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    readable_ = other.readable_;
    writable_ = other.writable_;
    socket_ = other.socket_;
    broken_ = other.broken_;
    max_message_size_ = other.max_message_size_;
  }
  return *this;
}

connection::~connection() {
  close();
}

void connection::close() noexcept {
  if (fd_ >= 0) {
    // Linux releases the descriptor even when close() reports EINTR: never retry.
    ::close(fd_);
    fd_ = -1;
  }
}

int connection::fileno() const {
  if (fd_ < 0) throw usage_error("connection: handle is closed");
  return fd_;
}

void connection::check_readable() const {
  if (fd_ < 0) throw usage_error("connection: handle is closed");
  if (!readable_)
    throw usage_error("connection is write-only: receive on the other end of the pipe");
  if (broken_)
    throw usage_error("connection is unusable after an earlier receive error left the stream at "
                      "an unknown position: close it");
}

void connection::check_writable() const {
  if (fd_ < 0) throw usage_error("connection: handle is closed");
  if (!writable_) throw usage_error("connection is read-only: send on the other end of the pipe");
}

// -- sending ----------------------------------------------------------------------------------

void connection::send_bytes(std::span<const std::byte> buf, std::size_t offset,
                            std::optional<std::size_t> size) {
  check_writable();
  if (offset > buf.size())
    throw value_error("send_bytes: offset " + std::to_string(offset) +
                      " is past the end of a buffer of " + std::to_string(buf.size()) + " bytes");
  std::size_t n = size.value_or(buf.size() - offset);
  if (n > buf.size() - offset)
    throw value_error("send_bytes: offset + size exceeds the buffer length of " +
                      std::to_string(buf.size()) + " bytes");
  auto body = buf.subspan(offset, n);

  tandem::detail::frame::header_buffer header{};
  std::size_t header_size = tandem::detail::frame::encode_header(n, header);

  // One writev per attempt so that a small message goes out in one system call.
  iovec iov[2] = {{header.data(), header_size},
                  {const_cast<std::byte*>(body.data()), body.size()}}; // NOLINT: iovec is not const
  int first = 0;
  int count = body.empty() ? 1 : 2;
  std::optional<sigpipe_guard> guard;
  if (!socket_) guard.emplace();
  while (first < count) {
    ssize_t written = 0;
    if (socket_) {
      msghdr msg{};
      msg.msg_iov = iov + first;
      msg.msg_iovlen = static_cast<std::size_t>(count - first);
      written = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    } else {
      written = ::writev(fd_, iov + first, count - first);
    }
    if (written < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EPIPE && guard) guard->consume();
      // A reset peer is reported as EPIPE too, so callers test for one code.
      if (err == EPIPE || err == ECONNRESET)
        throw_errno(EPIPE, "send_bytes: the other end of the pipe is closed");
      throw_errno(err, "send_bytes: write failed");
    }
    auto left = static_cast<std::size_t>(written);
    while (first < count && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      ++first;
    }
    if (first < count) {
      iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
}

// -- receiving --------------------------------------------------------------------------------

std::size_t connection::read_some(std::span<std::byte> out) {
  for (;;) {
    ssize_t got = ::read(fd_, out.data(), out.size());
    if (got >= 0) return static_cast<std::size_t>(got);
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return 0; // the peer is gone: the same as end of file
    throw_errno(errno, "recv_bytes: read failed");
  }
}

std::size_t connection::recv_header_polling(std::span<std::byte> head) {
  // A reply usually arrives within microseconds; sleeping in read() and being woken costs tens
  // of microseconds on a virtual CPU. So first try without blocking for a short window, yielding
  // the CPU between tries: when the peer shares this CPU, it runs (and answers) in the yield;
  // when it runs on another CPU, the answer is caught without a sleep and a wake-up.
  constexpr auto window = std::chrono::microseconds{30};
  auto end = std::chrono::steady_clock::now() + window;
  for (int i = 0;; ++i) {
    ssize_t got = ::recv(fd_, head.data(), head.size(), MSG_DONTWAIT);
    if (got > 0) return static_cast<std::size_t>(got);
    if (got == 0) return 0; // end of file: the caller's blocking read sees it again at once
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return 0; // the blocking read reports it
    if ((i & 7) == 7 && std::chrono::steady_clock::now() >= end) return 0;
    ::sched_yield();
  }
}

void connection::fail(const bad_message_error& e) {
  broken_ = true;
  throw e;
}

std::size_t connection::recv_header() {
  std::array<std::byte, tandem::detail::frame::short_header_size> head{};
  std::size_t got = 0;
  if (socket_) got = recv_header_polling(head);
  while (got < head.size()) {
    std::size_t n = read_some(std::span{head}.subspan(got));
    if (n == 0) {
      if (got == 0)
        throw eof_error("recv_bytes: the other end of the pipe is closed and every message was "
                        "read");
      fail(bad_message_error("recv_bytes: the other end closed in the middle of a header"));
    }
    got += n;
  }
  try {
    auto h = tandem::detail::frame::decode_short(head, max_message_size_);
    if (!h.extended) return static_cast<std::size_t>(h.length);
    std::array<std::byte, tandem::detail::frame::extended_header_size> ext{};
    recv_body(ext);
    return static_cast<std::size_t>(tandem::detail::frame::decode_extended(ext, max_message_size_));
  } catch (const bad_message_error& e) {
    fail(e);
  }
}

void connection::recv_body(std::span<std::byte> out) {
  std::size_t got = 0;
  while (got < out.size()) {
    std::size_t n = read_some(out.subspan(got));
    if (n == 0)
      fail(bad_message_error("recv_bytes: the other end closed in the middle of a message of " +
                             std::to_string(out.size()) + " bytes"));
    got += n;
  }
}

std::vector<std::byte> connection::recv_bytes(std::optional<std::size_t> maxlength) {
  check_readable();
  std::size_t n = recv_header();
  if (maxlength && n > *maxlength) {
    // The body is still in the stream, so the next header cannot be found: as Python, give up on
    // the connection.
    broken_ = true;
    throw value_error("recv_bytes: bad message length: " + std::to_string(n) +
                      " bytes exceeds maxlength " + std::to_string(*maxlength) +
                      "; the connection is now unusable");
  }
  std::vector<std::byte> out(n);
  recv_body(out);
  return out;
}

std::optional<std::vector<std::byte>> connection::recv_bytes(timeout t,
                                                             std::optional<std::size_t> maxlength) {
  if (!poll(t)) return std::nullopt;
  return recv_bytes(maxlength);
}

std::optional<std::vector<std::byte>> connection::recv_bytes(std::stop_token st, timeout t,
                                                             std::optional<std::size_t> maxlength) {
  if (!poll(std::move(st), t)) return std::nullopt;
  return recv_bytes(maxlength);
}

std::size_t connection::recv_bytes_into(std::span<std::byte> buf, std::size_t offset) {
  check_readable();
  if (offset > buf.size())
    throw value_error("recv_bytes_into: offset " + std::to_string(offset) +
                      " is past the end of a buffer of " + std::to_string(buf.size()) + " bytes");
  std::size_t n = recv_header();
  if (n > buf.size() - offset) {
    std::vector<std::byte> whole(n);
    recv_body(whole);
    throw buffer_too_short_error(
        "recv_bytes_into: a message of " + std::to_string(n) + " bytes does not fit in " +
            std::to_string(buf.size() - offset) + " bytes; the message is in the exception",
        std::move(whole));
  }
  recv_body(buf.subspan(offset, n));
  return n;
}

bool connection::poll(timeout t) {
  check_readable();
  return wait_readable(nullptr, t);
}

bool connection::poll(std::stop_token st, timeout t) {
  check_readable();
  return wait_readable(&st, t);
}

bool connection::wait_readable(const std::stop_token* st, timeout t) {
  pollfd pfd{fd_, POLLIN, 0};
  int rc = st != nullptr ? tandem::detail::ppoll_until(&pfd, 1, t, *st)
                         : tandem::detail::ppoll_until(&pfd, 1, t);
  if (rc < 0) throw_errno(errno, "poll failed");
  return rc > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

// -- pipe -------------------------------------------------------------------------------------

namespace {
// The kernel buffer pipe() asks for on each descriptor.
constexpr int large_buffer_bytes = 1 << 20;
} // namespace

std::pair<connection, connection> pipe(bool duplex) {
  // Both kinds are Unix stream sockets: on Linux they move large messages several times faster
  // than pipe(2) (the measured 1 MiB transfer went from about 1-3 GB/s to 7-10 GB/s), and they
  // take MSG_NOSIGNAL, so a send to a closed reader needs no signal-mask juggling.
  int fds[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    throw_errno(errno, "pipe: socketpair failed");
  // Larger socket buffers let large messages cross in fewer, larger copies and wake-ups (the
  // kernel caps them at net.core.wmem_max and rmem_max; a refusal keeps the defaults).
  for (int fd : fds) {
    [[maybe_unused]] int a =
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &large_buffer_bytes, sizeof large_buffer_bytes);
    [[maybe_unused]] int b =
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &large_buffer_bytes, sizeof large_buffer_bytes);
  }
  if (duplex) return {connection{fds[0], true, true}, connection{fds[1], true, true}};
  // One way: the reader's sending half and the writer's receiving half are shut down, so the
  // descriptors behave as the two ends of a pipe(2) also for code that uses fileno() directly.
  ::shutdown(fds[0], SHUT_WR);
  ::shutdown(fds[1], SHUT_RD);
  return {connection{fds[0], true, false}, connection{fds[1], false, true}};
}

} // namespace tandem::mp
