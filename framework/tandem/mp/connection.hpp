// tandem::mp::connection: one end of a pipe, Python's `multiprocessing.connection.Connection`
// (bytes API).
//
// A connection owns a file descriptor (a Unix stream socket for a duplex pipe, one end of a
// pipe(2) otherwise) and sends and receives whole messages over it. Each send_bytes() writes one
// frame (tandem/detail/frame.hpp: a length header, then the bytes), each recv_bytes() reads one:
// message boundaries are kept, zero-length messages exist, and the wire format is Python's, so a
// tandem connection and a Python Connection exchange byte messages.
//
//   auto [a, b] = tandem::mp::pipe();
//   std::thread peer{[&] { b.send_bytes(b.recv_bytes()); }};   // echo
//   a.send_bytes(std::as_bytes(std::span{"hello", 5}));
//   auto reply = a.recv_bytes();                                // 5 bytes
//   peer.join();
//
// States: open or closed (after close(), a move, or default construction). An open connection
// may also be broken: after a receive error that leaves the stream at an unknown place (a corrupt
// header, a message longer than recv_bytes' maxlength, a truncated message), every later receive
// throws usage_error. Python closes the connection in the same places; tandem keeps the
// descriptor open until close() so that fileno() stays valid, but the read side is unusable.
//
// Errors:
//   - any call but close(), closed(), readable(), writable() on a closed connection: usage_error
//     (Python's OSError "handle is closed");
//   - sending on a read-only end or receiving on a write-only end: usage_error;
//   - receiving when the peer closed and every message it sent was read: eof_error;
//   - the peer closed in the middle of a message: bad_message_error (the message is lost and the
//     connection is broken);
//   - a header with a reserved or too large length: bad_message_error, raised before anything is
//     allocated (the limit is max_message_size(), 1 GiB by default), and the connection is broken;
//   - sending to a peer that closed: tandem::error whose code() is
//     std::error_code(EPIPE, std::system_category()) (Python's BrokenPipeError). Sending never
//     raises SIGPIPE, so a dead peer never kills the process;
//   - other operating-system failures: tandem::error with the errno in std::system_category().
//
// Thread-safety: like Python's Connection, a connection is not synchronized. One thread may send
// while another receives on the same duplex end; two threads must not send (or receive) on the
// same end at once, and close() must not race any other call.
//
// Lifetime: the destructor closes the descriptor. A connection is move-only; a moved-from
// connection is closed.
#pragma once

#include <tandem/detail/frame.hpp>
#include <tandem/timeout.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <stop_token>
#include <vector>

namespace tandem::mp {

class connection {
public:
  // -- construction ---------------------------------------------------------------------------

  /// A closed connection.
  connection() noexcept = default;

  /// Takes ownership of `fd` (Python's `Connection(handle, readable, writable)`). Throws
  /// value_error when `fd` is negative or neither direction is allowed; `fd` is then closed
  /// only when it is not negative.
  connection(int fd, bool readable, bool writable);

  connection(connection&& other) noexcept;
  connection& operator=(connection&& other) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Closes the descriptor. Never throws.
  ~connection();

  /// Closes the connection; a second close() does nothing. Never throws.
  void close() noexcept;

  // -- sending --------------------------------------------------------------------------------

  /// Sends `size` bytes of `buf` starting at `offset` (all from `offset` on when `size` is empty)
  /// as one message. Blocks while the pipe is full. Throws value_error when `offset` is past the
  /// end of `buf` or `offset + size` is; usage_error when closed or read-only; tandem::error with
  /// EPIPE when the peer closed. A message the peer cannot accept (above its max_message_size)
  /// is sent anyway and refused by the receiver.
  void send_bytes(std::span<const std::byte> buf, std::size_t offset = 0,
                  std::optional<std::size_t> size = {});

  // -- receiving ------------------------------------------------------------------------------

  /// Receives one message; blocks until one arrives. Throws eof_error when the peer closed and
  /// nothing is left; value_error when the message is longer than `maxlength` (the message is not
  /// read and the connection is broken: later receives throw usage_error); bad_message_error for
  /// a corrupt or truncated frame; usage_error when closed, broken or write-only.
  std::vector<std::byte> recv_bytes(std::optional<std::size_t> maxlength = {});

  /// Receives one message into `buf` at `offset`; returns its length. Throws value_error when
  /// `offset` is past the end of `buf` (nothing is read); buffer_too_short_error carrying the
  /// whole message when it does not fit (the message is consumed; the connection stays usable);
  /// otherwise as recv_bytes().
  std::size_t recv_bytes_into(std::span<std::byte> buf, std::size_t offset = 0);

  /// True when a receive would not block: a message (or part of one) is ready, or the peer
  /// closed. Waits up to `t` (default: do not wait). Negative timeouts are equivalent to a zero
  /// timeout. Deadlines in the past are equivalent to an immediate deadline. Throws usage_error
  /// when closed, broken or write-only.
  bool poll(timeout t = std::chrono::seconds{0});

  /// As poll(t), and returns false promptly (without throwing) once a stop is requested on `st`,
  /// even when a message is ready.
  ///
  ///   std::jthread watcher{[&](std::stop_token st) {
  ///     while (conn.poll(st, tandem::forever))
  ///       handle(conn.recv_bytes());
  ///   }};
  bool poll(std::stop_token st, timeout t = std::chrono::seconds{0});

  // -- observers ------------------------------------------------------------------------------

  /// True after close() (or a move, or default construction).
  bool closed() const noexcept { return fd_ < 0; }

  /// True when this end may receive (Python's `readable`); stays as it was after close().
  bool readable() const noexcept { return readable_; }

  /// True when this end may send (Python's `writable`); stays as it was after close().
  bool writable() const noexcept { return writable_; }

  /// The file descriptor, still owned by the connection. Throws usage_error when closed.
  int fileno() const;

  /// The longest message this end accepts; longer ones are a bad_message_error before any
  /// allocation. Default 1 GiB.
  std::size_t max_message_size() const noexcept { return max_message_size_; }

  /// Sets max_message_size(). Not synchronized with a concurrent receive.
  void set_max_message_size(std::size_t n) noexcept { max_message_size_ = n; }

private:
  void check_readable() const;
  void check_writable() const;
  // Reads the header of the next message and returns its length.
  std::size_t recv_header();
  // Reads exactly `out.size()` bytes of a message body.
  void recv_body(std::span<std::byte> out);
  // Reads up to `out.size()` bytes; returns how many (0 only at end of file).
  std::size_t read_some(std::span<std::byte> out);
  [[noreturn]] void fail(const bad_message_error& e);
  // ppoll for input on fd_, or any event on stop_fd (when not negative), until `t`; false on
  // timeout or stop.
  bool wait_readable(int stop_fd, timeout t);

  int fd_ = -1;
  bool readable_ = false;
  bool writable_ = false;
  bool socket_ = false;
  bool broken_ = false;
  std::size_t max_message_size_ = detail::frame::default_max_length;
};

} // namespace tandem::mp
