// tandem::mp::connection: one end of a pipe, Python's `multiprocessing.connection.Connection`.
//
// A connection owns a file descriptor (a Unix record socket from mp::pipe(), or any socket or
// pipe(2) end handed to the constructor) and sends and receives whole messages over it. Each
// send_bytes() writes one frame (tandem/detail/frame.hpp: a length header, then the bytes), each
// recv_bytes() reads one: message boundaries are kept and zero-length messages exist. On a stream
// socket or a pipe(2) end the bytes are exactly Python's, so a connection made from such a
// descriptor and a Python Connection exchange byte messages.
//
// On a SOCK_SEQPACKET socket (both ends of mp::pipe()) a frame of up to 64 KiB travels as one
// record, and a longer streamed one as a first record and continuation records: a small message
// is received with one system call, header and body together, where a stream needs two (a
// length, then the body) unless it reads ahead of the message. A record that holds more than its
// frame, or less than a header, is a bad_message_error.
//
//   auto [a, b] = tandem::mp::pipe();
//   std::thread peer{[&] { b.send_bytes(b.recv_bytes()); }};   // echo
//   a.send_bytes(std::as_bytes(std::span{"hello", 5}));
//   auto reply = a.recv_bytes();                                // 5 bytes
//   peer.join();
//
// Objects (Python's send(obj)/recv()), with CAF's headers (link tandem::framework): send(obj)
// encodes any value with a CAF `inspect` overload (numbers, strings, std containers, user structs)
// into one message (tandem/mp/detail/codec.hpp) and recv<T>() decodes one. A message carries a tag
// of its type, so receiving it as another type is a bad_message_error, never undefined behaviour;
// the whole message was read, so the connection stays usable.
//
//   a.send(std::map<std::string, int>{{"answer", 42}});
//   auto m = b.recv<std::map<std::string, int>>();
//   if (auto n = b.recv<int>(250ms)) use(*n);                  // std::nullopt after 250 ms
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
//   - receiving an object whose message holds another type, is corrupt, or has trailing bytes:
//     bad_message_error (the message was consumed whole: the connection stays usable);
//   - sending an object whose inspect overload reports an error: value_error, and nothing is sent;
//   - other operating-system failures: tandem::error with the errno in std::system_category().
//
// Large messages: the two ends of an mp::pipe() move a message of 64 KiB or more through shared
// memory instead of the socket (shared_memory_transfers()): the sender copies it into a memory
// file both processes map and sends a small marker record; the receiver copies it out and frees
// the room. That is one copy each way instead of the kernel's two copies in socket-buffer-sized
// pieces (1 MiB messages move about three times as fast). The memory (16 MiB of address space
// per sending end) is made on the first large send; its descriptor rides on every marker, so
// any process reading the end (forked readers may take turns) can map it. A sender keeps at most
// 4 MiB in flight (or one larger message) so that its copies stay in the caches; beyond that it
// waits up to 250 ms for the receiver to free room, then streams the message through the socket
// (which blocks as a full socket does, and reports a closed reader with EPIPE). Messages longer
// than 16 MiB are streamed as usual. A connection made from a descriptor streams everything in
// Python's format unless set_shared_memory_transfers(true) is called on both ends; a Python
// process could not read an mp::pipe() end (records and markers are tandem's own).
//
// Waiting: on a socket (every mp::pipe() end), a receive that finds no message first retries
// without blocking for up to 30 microseconds, yielding the CPU between tries, and only then
// sleeps in read(2): a prompt reply is caught without a sleep and a wake-up (a 64-byte round trip
// between two CPUs takes about 6 us instead of 40 us here). Right after a send on the same
// connection, it yields first: the reply cannot be there yet, and a peer sharing this CPU gets to
// produce it. A connection never reads ahead of the
// message it receives, so select/epoll on fileno() always sees every pending message.
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
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// The objects API needs the codec, which needs CAF's headers (tandem::framework links CAF).
// Without them the members below still exist but fail to compile when used, with a message that
// says why, and tandem::primitives (bytes only) builds without CAF.
#if __has_include(<caf/serializer.hpp>)
#include <tandem/mp/detail/codec.hpp>
#define TANDEM_MP_CONNECTION_OBJECTS 1
#else
namespace tandem::mp::detail {
template <class... Ts>
void encode(std::vector<std::byte>&, const Ts&...) {
  static_assert(sizeof...(Ts) == 0, "connection::send(obj) needs CAF's headers: link "
                                    "tandem::framework");
}
template <class... Ts>
std::tuple<Ts...> decode(std::span<const std::byte>) {
  static_assert(sizeof...(Ts) == 0, "connection::recv<T>() needs CAF's headers: link "
                                    "tandem::framework");
  return {};
}
} // namespace tandem::mp::detail
#endif

namespace tandem::mp {

namespace detail {
struct pipe_areas;
class pipe_area;
// Deletes a pipe_areas where its type is complete, so connection.hpp needs only its name.
struct pipe_areas_deleter {
  void operator()(pipe_areas* p) const noexcept;
};
} // namespace detail

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

  /// As recv_bytes(maxlength), but waits at most `t` for the message to begin: returns
  /// std::nullopt when none began by then. Once a message has begun, the rest of it is read
  /// without a deadline (its sender is writing it). Throws eof_error at end of file, never
  /// std::nullopt. Negative timeouts are equivalent to a zero timeout. Deadlines in the past are
  /// equivalent to an immediate deadline.
  std::optional<std::vector<std::byte>> recv_bytes(timeout t,
                                                   std::optional<std::size_t> maxlength = {});

  /// As recv_bytes(t, maxlength), and returns std::nullopt promptly once a stop is requested on
  /// `st` (before a message has begun).
  std::optional<std::vector<std::byte>> recv_bytes(std::stop_token st, timeout t = forever,
                                                   std::optional<std::size_t> maxlength = {});

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

  // -- objects (need CAF's headers) -----------------------------------------------------------

  /// Sends `obj` as one message (Python's send(obj)). T is any type with a CAF inspect overload;
  /// a string literal, `const char*` or std::string_view is sent as a std::string, so the peer
  /// receives it with recv<std::string>(). Encodes first, so an object whose inspect overload
  /// reports an error throws value_error and nothing is sent. Blocks and throws as send_bytes().
  template <class T>
  void send(const T& obj) {
    std::vector<std::byte> buf;
    if constexpr (std::is_convertible_v<const T&, std::string_view> &&
                  !std::is_same_v<T, std::string>) {
      mp::detail::encode(buf, std::string{std::string_view{obj}});
    } else {
      mp::detail::encode(buf, obj);
    }
    send_bytes(buf);
  }

  /// Receives one object sent by send(T) (Python's recv()); blocks until a message arrives.
  /// Throws bad_message_error when the message holds another type or does not decode (the
  /// message is consumed: the connection stays usable); otherwise as recv_bytes(). T must be
  /// default constructible.
  ///
  ///   auto v = conn.recv<std::vector<std::string>>();
  template <class T>
  T recv() {
    return std::get<0>(mp::detail::decode<T>(recv_bytes()));
  }

  /// As recv<T>(), but waits at most `t` for a message to begin: std::nullopt when none did.
  /// Throws eof_error at end of file, never std::nullopt. Negative timeouts are equivalent to a
  /// zero timeout. Deadlines in the past are equivalent to an immediate deadline.
  template <class T>
  std::optional<T> recv(timeout t) {
    auto bytes = recv_bytes(t);
    if (!bytes) return std::nullopt;
    return std::get<0>(mp::detail::decode<T>(*bytes));
  }

  /// As recv<T>(t), and returns std::nullopt promptly once a stop is requested on `st`.
  ///
  ///   std::jthread worker{[&](std::stop_token st) {
  ///     while (auto job = conn.recv<job_spec>(st)) run(*job);
  ///   }};
  template <class T>
  std::optional<T> recv(std::stop_token st, timeout t = forever) {
    auto bytes = recv_bytes(std::move(st), t);
    if (!bytes) return std::nullopt;
    return std::get<0>(mp::detail::decode<T>(*bytes));
  }

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

  /// True when large messages travel through shared memory (see the file comment): on for both
  /// ends of an mp::pipe(), off for a connection made from a descriptor.
  bool shared_memory_transfers() const noexcept { return shared_transfers_; }

  /// Turns shared-memory transfers on or off for what this end sends and accepts. Turn it on only
  /// when the peer is a tandem connection with it on too: the peer otherwise fails with
  /// bad_message_error on the first large message. Throws usage_error when the connection is
  /// closed or its descriptor is not a Unix socket (the memory's descriptor travels with each
  /// marker).
  void set_shared_memory_transfers(bool on);

private:
  // The next message, as its header describes it: its length, and where it lies when it came
  // through shared memory (area is null for a streamed message, whose body follows in the
  // stream).
  struct incoming {
    std::size_t size = 0;
    detail::pipe_area* area = nullptr;
    std::uint32_t first = 0;
  };

  void check_readable() const;
  void check_writable() const;
  // Sends through shared memory; false when the message should be streamed instead.
  bool send_shared(std::span<const std::byte> body);
  // Reads the header of the next message.
  incoming recv_header();
  // Reads a shared-memory marker's descriptor from a stream and resolves its area.
  incoming recv_shared();
  // Checks a marker's descriptor and finds (or maps) its area.
  incoming resolve_shared(std::span<const std::byte, 24> descriptor);
  // Reads the body of `m` into `out` (exactly m.size bytes) and frees its shared memory.
  void recv_message(const incoming& m, std::span<std::byte> out);
  // Frees the shared memory of a message that will not be read.
  void discard(const incoming& m) noexcept;
  // recv(2), or recvmsg(2) collecting passed descriptors when shared transfers are on.
  ssize_t receive(std::span<std::byte> out, int flags, bool* truncated = nullptr);
  // Reads the first bytes of a header (on a record socket: the first record) without blocking,
  // trying for a short while; returns how many (0 when none came: the caller then blocks).
  std::size_t recv_header_polling(std::span<std::byte> head, bool& truncated);
  // A record socket's recv_header: reads the first record of the next message.
  incoming recv_record_header();
  // Reads the rest of a streamed message from a record socket.
  void recv_record_body(std::span<std::byte> out);
  // Reads one record, blocking; 0 at end of file. Sets `truncated` when it did not fit.
  std::size_t read_record(std::span<std::byte> out, bool& truncated);
  // Sends one record (header and body gathered), or a message split into records.
  void send_record(std::span<const std::byte> head, std::span<const std::byte> body);
  void send_records(std::span<const std::byte> header, std::span<const std::byte> body);
  // Reads exactly `out.size()` bytes of a message body.
  void recv_body(std::span<std::byte> out);
  // Reads up to `out.size()` bytes; returns how many (0 only at end of file).
  std::size_t read_some(std::span<std::byte> out);
  [[noreturn]] void fail(const bad_message_error& e);
  // ppoll for input on fd_ until `t`, or (when `st` is not null) a stop request; false on
  // timeout or stop.
  bool wait_readable(const std::stop_token* st, timeout t);

  int fd_ = -1;
  bool readable_ = false;
  bool writable_ = false;
  bool socket_ = false;
  bool records_ = false; // a SOCK_SEQPACKET socket: messages are records
  bool broken_ = false;
  bool shared_transfers_ = false;
  bool awaiting_reply_ = false; // sent since the last receive: a reply takes the peer's turn
  std::size_t max_message_size_ = tandem::detail::frame::default_max_length;
  std::unique_ptr<detail::pipe_areas, detail::pipe_areas_deleter>
      areas_; // made when shared transfers are turned on
  // A record socket's first record of the message being read, and the body bytes it holds.
  std::vector<std::byte> record_;
  std::size_t record_begin_ = 0;
  std::size_t record_end_ = 0;
};

} // namespace tandem::mp
