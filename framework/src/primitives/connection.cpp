// tandem::mp::connection and tandem::mp::pipe: framed byte messages over a socket or a pipe.
#include <tandem/detail/futex.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/pipe.hpp>

#include "internal/pipe_area.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
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

// Messages from this size on go through shared memory when the connection allows it: below it
// the socket's copies cost less than a marker frame plus two memcpys (measured: bench/mp_bench).
constexpr std::size_t shared_threshold = std::size_t{64} << 10;

// The largest record a record socket (mp::pipe()'s SOCK_SEQPACKET) carries: a message with its
// header up to this size is one record, and a longer one is split into records of this size.
constexpr std::size_t record_max = std::size_t{64} << 10;

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
  if (socket_) {
    int type = 0;
    socklen_t len = sizeof type;
    records_ = ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET;
  }
}

connection::connection(connection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), readable_(other.readable_), writable_(other.writable_),
      socket_(other.socket_), records_(other.records_), broken_(other.broken_),
      shared_transfers_(other.shared_transfers_), max_message_size_(other.max_message_size_),
      areas_(std::move(other.areas_)), record_(std::move(other.record_)),
      record_begin_(std::exchange(other.record_begin_, 0)),
      record_end_(std::exchange(other.record_end_, 0)) {}

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    readable_ = other.readable_;
    writable_ = other.writable_;
    socket_ = other.socket_;
    records_ = other.records_;
    broken_ = other.broken_;
    shared_transfers_ = other.shared_transfers_;
    max_message_size_ = other.max_message_size_;
    areas_ = std::move(other.areas_);
    record_ = std::move(other.record_);
    record_begin_ = std::exchange(other.record_begin_, 0);
    record_end_ = std::exchange(other.record_end_, 0);
  }
  return *this;
}

connection::~connection() {
  close();
}

void connection::close() noexcept {
  areas_.reset();
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

void connection::set_shared_memory_transfers(bool on) {
  if (fd_ < 0) throw usage_error("connection: handle is closed");
  if (on) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (!socket_ || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        addr.ss_family != AF_UNIX)
      throw usage_error("shared-memory transfers need a Unix socket: the memory's descriptor "
                        "travels with each large message");
    if (!areas_) areas_.reset(new detail::pipe_areas{}); // NOLINT: owned by areas_ at once
  }
  shared_transfers_ = on;
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
  awaiting_reply_ = true;
  if (shared_transfers_ && n >= shared_threshold && n <= detail::pipe_area::capacity &&
      send_shared(body))
    return;

  tandem::detail::frame::header_buffer header{};
  std::size_t header_size = tandem::detail::frame::encode_header(n, header);
  if (records_) {
    send_records(std::span{header}.first(header_size), body);
    return;
  }

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

void connection::send_record(std::span<const std::byte> head, std::span<const std::byte> body) {
  iovec iov[2] = {{const_cast<std::byte*>(head.data()), head.size()},  // NOLINT: iovec is not const
                  {const_cast<std::byte*>(body.data()), body.size()}}; // NOLINT
  msghdr msg{};
  msg.msg_iov = head.empty() ? iov + 1 : iov;
  msg.msg_iovlen = head.empty() || body.empty() ? 1 : 2;
  for (;;) {
    // A record goes out whole or not at all.
    ssize_t written = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (written >= 0) return;
    int err = errno;
    if (err == EINTR) continue;
    if (err == EPIPE || err == ECONNRESET)
      throw_errno(EPIPE, "send_bytes: the other end of the pipe is closed");
    throw_errno(err, "send_bytes: write failed");
  }
}

void connection::send_records(std::span<const std::byte> header, std::span<const std::byte> body) {
  std::size_t first = std::min(body.size(), record_max - header.size());
  send_record(header, body.first(first));
  for (std::size_t at = first; at < body.size();) {
    std::size_t k = std::min(record_max, body.size() - at);
    send_record({}, body.subspan(at, k));
    at += k;
  }
}

bool connection::send_shared(std::span<const std::byte> body) {
  auto& areas = *areas_;
  if (!areas.own) {
    try {
      areas.own = detail::pipe_area::create();
    } catch (const error&) {
      // Out of descriptors or memory for the area: the socket still carries the message.
      shared_transfers_ = false;
      return false;
    }
  }
  auto& area = *areas.own;
  // The receiver frees room as it reads. Spin a little (yielding lets a receiver on this CPU
  // run), then sleep until a release.
  auto first = area.try_claim(body.size());
  for (int i = 0; !first && i < 64; ++i) {
    ::sched_yield();
    first = area.try_claim(body.size());
  }
  // Memory a dead process claimed and never freed would block a large claim for good, and a
  // reader that is alive but slow costs the same either way: after a bounded wait the message
  // goes through the socket, which blocks (or reports a closed peer) as a socket does.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds{250};
  while (!first) {
    first = area.claim(body.size(), std::chrono::milliseconds{50});
    if (!first && std::chrono::steady_clock::now() >= give_up) return false;
  }
  std::memcpy(area.bytes(*first, body.size()).data(), body.data(), body.size());

  std::array<std::byte, tandem::detail::frame::short_header_size +
                            tandem::detail::frame::shared_descriptor_size>
      marker{};
  std::uint32_t raw = tandem::detail::frame::shared_marker;
  for (std::size_t i = 0; i < tandem::detail::frame::short_header_size; ++i)
    marker[i] = static_cast<std::byte>((raw >> (8 * (3 - i))) & 0xffU);
  std::uint64_t id = area.id();
  std::uint32_t chunk = *first;
  std::uint32_t reserved = 0;
  std::uint64_t length = body.size();
  auto* d = marker.data() + tandem::detail::frame::short_header_size;
  std::memcpy(d, &id, 8);
  std::memcpy(d + 8, &chunk, 4);
  std::memcpy(d + 12, &reserved, 4);
  std::memcpy(d + 16, &length, 8);

  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  std::size_t sent = 0;
  // The memory's descriptor rides on every marker: whichever process reads the marker (ends may
  // be shared by forked readers taking turns) can map the memory; a reader that knows it closes
  // the copy.
  while (sent < marker.size()) {
    iovec iov{marker.data() + sent, marker.size() - sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (sent == 0) {
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      int fd = area.fd();
      std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t written = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (written < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (sent == 0) area.release(chunk, body.size());
      if (err == EPIPE || err == ECONNRESET)
        throw_errno(EPIPE, "send_bytes: the other end of the pipe is closed");
      throw_errno(err, "send_bytes: write failed");
    }
    sent += static_cast<std::size_t>(written);
  }
  return true;
}

// -- receiving --------------------------------------------------------------------------------

ssize_t connection::receive(std::span<std::byte> out, int flags, bool* truncated) {
  if (!areas_ && !records_) return ::recv(fd_, out.data(), out.size(), flags);
  iovec iov{out.data(), out.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // With shared transfers on, a marker may carry a descriptor; the control buffer keeps it (room
  // for a few: a peer that sends more loses the rest). Without one, the kernel closes passed
  // descriptors itself.
  alignas(cmsghdr) std::array<char, CMSG_SPACE(4 * sizeof(int))> control{};
  if (areas_) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
  }
  ssize_t got = ::recvmsg(fd_, &msg, flags | MSG_CMSG_CLOEXEC);
  if (got < 0) return got;
  if (truncated != nullptr) *truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  if (!areas_) return got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      areas_->pending_fds.push_back(fd);
    }
  }
  return got;
}

std::size_t connection::read_some(std::span<std::byte> out) {
  for (;;) {
    ssize_t got = socket_ ? receive(out, 0) : ::read(fd_, out.data(), out.size());
    if (got >= 0) return static_cast<std::size_t>(got);
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return 0; // the peer is gone: the same as end of file
    throw_errno(errno, "recv_bytes: read failed");
  }
}

std::size_t connection::read_record(std::span<std::byte> out, bool& truncated) {
  for (;;) {
    ssize_t got = receive(out, 0, &truncated);
    if (got >= 0) return static_cast<std::size_t>(got);
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return 0; // the peer is gone: the same as end of file
    throw_errno(errno, "recv_bytes: read failed");
  }
}

std::size_t connection::recv_header_polling(std::span<std::byte> head, bool& truncated) {
  // A reply usually arrives within microseconds; sleeping in read() and being woken costs tens
  // of microseconds on a virtual CPU. So first try without blocking for a short window, yielding
  // the CPU between tries: when the peer shares this CPU, it runs (and answers) in the yield;
  // when it runs on another CPU, the answer is caught without a sleep and a wake-up.
  constexpr auto window = std::chrono::microseconds{30};
  auto end = std::chrono::steady_clock::now() + window;
  // Right after a send on this connection the answer cannot be there yet: let the peer run
  // first (on a shared CPU this is what produces the answer) instead of a read that must fail.
  if (std::exchange(awaiting_reply_, false)) ::sched_yield();
  for (int i = 0;; ++i) {
    ssize_t got = receive(head, MSG_DONTWAIT, &truncated);
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

connection::incoming connection::recv_header() {
  if (areas_) areas_->drop_pending();
  if (records_) return recv_record_header();
  std::array<std::byte, tandem::detail::frame::short_header_size> head{};
  std::size_t got = 0;
  bool truncated = false; // a stream is never truncated
  if (socket_) got = recv_header_polling(head, truncated);
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
    if (h.shared) return recv_shared();
    if (areas_) areas_->drop_pending(); // descriptors only ever ride on markers
    if (!h.extended) return {static_cast<std::size_t>(h.length)};
    std::array<std::byte, tandem::detail::frame::extended_header_size> ext{};
    recv_body(ext);
    return {
        static_cast<std::size_t>(tandem::detail::frame::decode_extended(ext, max_message_size_))};
  } catch (const bad_message_error& e) {
    fail(e);
  }
}

connection::incoming connection::recv_record_header() {
  using namespace tandem::detail::frame;
  if (record_.empty()) record_.resize(record_max);
  std::span<std::byte> buf{record_};
  record_begin_ = record_end_ = 0;
  bool truncated = false;
  std::size_t got = recv_header_polling(buf, truncated);
  if (got == 0) got = read_record(buf, truncated);
  if (got == 0)
    throw eof_error("recv_bytes: the other end of the pipe is closed and every message was read");
  try {
    if (truncated)
      throw bad_message_error("recv_bytes: a record longer than " + std::to_string(record_max) +
                              " bytes arrived: the stream was not written by a tandem connection");
    if (got < short_header_size)
      throw bad_message_error("recv_bytes: a record of " + std::to_string(got) +
                              " bytes is shorter than a message header");
    auto h = decode_short(buf.first<short_header_size>(), max_message_size_);
    if (h.shared) {
      if (got != short_header_size + shared_descriptor_size)
        throw bad_message_error("recv_bytes: a shared-memory marker of " + std::to_string(got) +
                                " bytes: the stream is corrupt");
      return resolve_shared(buf.subspan<short_header_size, shared_descriptor_size>());
    }
    if (areas_) areas_->drop_pending(); // descriptors only ever ride on markers
    std::size_t head = short_header_size;
    std::uint64_t length = h.length;
    if (h.extended) {
      if (got < max_header_size)
        throw bad_message_error("recv_bytes: a record ends inside an extended header");
      length = decode_extended(buf.subspan<short_header_size, extended_header_size>(),
                               max_message_size_);
      head = max_header_size;
    }
    if (got - head > length)
      throw bad_message_error("recv_bytes: a record holds " + std::to_string(got - head - length) +
                              " bytes past the end of its message: the stream was not written by "
                              "a tandem connection");
    record_begin_ = head;
    record_end_ = got;
    return {static_cast<std::size_t>(length)};
  } catch (const bad_message_error& e) {
    fail(e);
  }
}

void connection::recv_record_body(std::span<std::byte> out) {
  std::size_t have = record_end_ - record_begin_; // the header check made it <= out.size()
  if (have != 0) std::memcpy(out.data(), record_.data() + record_begin_, have);
  record_begin_ = record_end_ = 0;
  std::size_t got = have;
  while (got < out.size()) {
    // Continuation records: straight into place. One longer than what is left is a lie.
    bool truncated = false;
    std::size_t n = read_record(out.subspan(got), truncated);
    if (n == 0)
      fail(bad_message_error("recv_bytes: the other end closed in the middle of a message of " +
                             std::to_string(out.size()) + " bytes"));
    if (truncated)
      fail(bad_message_error("recv_bytes: a record runs past the end of its message of " +
                             std::to_string(out.size()) + " bytes"));
    got += n;
  }
}

connection::incoming connection::recv_shared() {
  std::array<std::byte, tandem::detail::frame::shared_descriptor_size> d{};
  recv_body(d);
  return resolve_shared(d);
}

connection::incoming connection::resolve_shared(std::span<const std::byte, 24> d) {
  if (!shared_transfers_ || !areas_)
    throw bad_message_error("recv_bytes: a shared-memory marker arrived on a connection that does "
                            "not take shared-memory transfers: turn them on at both ends, or the "
                            "stream was not written by a tandem connection");
  std::uint64_t id = 0;
  std::uint32_t first = 0;
  std::uint64_t length = 0;
  std::memcpy(&id, d.data(), 8);
  std::memcpy(&first, d.data() + 8, 4);
  std::memcpy(&length, d.data() + 16, 8);
  if (length > max_message_size_)
    throw bad_message_error("pipe message of " + std::to_string(length) +
                            " bytes exceeds the limit of " + std::to_string(max_message_size_) +
                            " bytes: raise the connection's max_message_size if it is expected");
  auto& areas = *areas_;
  detail::pipe_area* area = areas.peer(id);
  if (area == nullptr) {
    if (areas.pending_fds.empty())
      throw bad_message_error("recv_bytes: a shared-memory message refers to memory this end was "
                              "never given: the stream is corrupt");
    if (areas.peers.size() >= detail::pipe_areas::max_peer_areas)
      throw bad_message_error("recv_bytes: the peer announced more than " +
                              std::to_string(detail::pipe_areas::max_peer_areas) +
                              " shared-memory areas");
    int fd = areas.pending_fds.front();
    areas.pending_fds.erase(areas.pending_fds.begin());
    auto fresh = detail::pipe_area::attach(fd);
    if (fresh->id() != id)
      throw bad_message_error("recv_bytes: a shared-memory message names another area than the "
                              "one it carries: the stream is corrupt");
    area = fresh.get();
    areas.peers.push_back(std::move(fresh));
  }
  areas.drop_pending();
  static_cast<void>(area->bytes(first, static_cast<std::size_t>(length))); // checks the range
  return {static_cast<std::size_t>(length), area, first};
}

void connection::recv_message(const incoming& m, std::span<std::byte> out) {
  if (m.area == nullptr) {
    if (records_)
      recv_record_body(out);
    else
      recv_body(out);
    return;
  }
  std::memcpy(out.data(), m.area->bytes(m.first, m.size).data(), m.size);
  m.area->release(m.first, m.size);
}

void connection::discard(const incoming& m) noexcept {
  if (m.area != nullptr) m.area->release(m.first, m.size);
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
  auto m = recv_header();
  std::size_t n = m.size;
  if (maxlength && n > *maxlength) {
    // The body is still in the stream, so the next header cannot be found: as Python, give up on
    // the connection (also when the message was in shared memory, to behave the same).
    discard(m);
    broken_ = true;
    throw value_error("recv_bytes: bad message length: " + std::to_string(n) +
                      " bytes exceeds maxlength " + std::to_string(*maxlength) +
                      "; the connection is now unusable");
  }
  std::vector<std::byte> out;
  try {
    out.resize(n);
  } catch (...) {
    discard(m); // the memory's room would otherwise stay claimed for good
    throw;
  }
  recv_message(m, out);
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
  auto m = recv_header();
  std::size_t n = m.size;
  if (n > buf.size() - offset) {
    std::vector<std::byte> whole;
    try {
      whole.resize(n);
    } catch (...) {
      discard(m);
      throw;
    }
    recv_message(m, whole);
    throw buffer_too_short_error(
        "recv_bytes_into: a message of " + std::to_string(n) + " bytes does not fit in " +
            std::to_string(buf.size() - offset) + " bytes; the message is in the exception",
        std::move(whole));
  }
  recv_message(m, buf.subspan(offset, n));
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

// Turns shared-memory transfers on for both ends of a fresh pipe.
std::pair<connection, connection> with_shared_transfers(std::pair<connection, connection> ends) {
  ends.first.set_shared_memory_transfers(true);
  ends.second.set_shared_memory_transfers(true);
  return ends;
}
} // namespace

std::pair<connection, connection> pipe(bool duplex) {
  // Both kinds are Unix record sockets: on Linux a socket moves data several times faster than
  // pipe(2), takes MSG_NOSIGNAL (no signal-mask juggling for a closed reader), carries the
  // descriptor of the shared memory for large messages, and as SOCK_SEQPACKET delivers a small
  // message, header and body, in one receive.
  int fds[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
    throw_errno(errno, "pipe: socketpair failed");
  // Larger socket buffers let large messages cross in fewer, larger copies and wake-ups (the
  // kernel caps them at net.core.wmem_max and rmem_max; a refusal keeps the defaults).
  for (int fd : fds) {
    [[maybe_unused]] int a =
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &large_buffer_bytes, sizeof large_buffer_bytes);
    [[maybe_unused]] int b =
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &large_buffer_bytes, sizeof large_buffer_bytes);
  }
  if (duplex)
    return with_shared_transfers({connection{fds[0], true, true}, connection{fds[1], true, true}});
  // One way: the reader's sending half and the writer's receiving half are shut down, so the
  // descriptors behave as the two ends of a pipe(2) also for code that uses fileno() directly.
  ::shutdown(fds[0], SHUT_WR);
  ::shutdown(fds[1], SHUT_RD);
  return with_shared_transfers({connection{fds[0], true, false}, connection{fds[1], false, true}});
}

} // namespace tandem::mp
