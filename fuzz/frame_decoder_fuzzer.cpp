// libFuzzer target: the pipe frame decoder (tandem::mp::connection's receive side).
//
// The input is written raw into a pipe or a socketpair and read back with recv_bytes,
// recv_bytes_into, poll and the timed recv_bytes, as a hostile peer's stream would be. The
// receiver's max_message_size is 1 MiB, so the run (with -malloc_limit_mb) also proves that no
// declared length makes it allocate beyond the cap. Every failure must be a tandem::error; a plain
// recv_bytes() stream is also checked against an independent reading of the framing.
//
// Input layout: byte 0 selects the mode (bits 0-1: the receive call, bit 2: socketpair instead of
// pipe, with shared-memory markers accepted, bits 3-7: maxlength or buffer size, and with a
// socketpair an odd value makes it a record socket, as mp::pipe() ends are, written in records
// whose size follows from it), the rest is the stream.
#include <tandem/error.hpp>
#include <tandem/mp/connection.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

namespace {

constexpr std::size_t cap = std::size_t{1} << 20;
// Below the capacity of a pipe and of a socket's buffer, so the whole stream is written before
// anything is read.
constexpr std::size_t max_stream = 60000;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "frame_decoder_fuzzer: %s\n", what);
  std::abort();
}

// What one recv_bytes() of `in` at `pos` must do, read independently of tandem's frame code.
struct expected_frame {
  enum { message, eof, bad } kind = bad;
  std::size_t begin = 0;
  std::size_t length = 0;
};

expected_frame expect(std::span<const std::uint8_t> in, std::size_t pos) {
  auto be = [&](std::size_t at, std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | in[at + i];
    return v;
  };
  if (pos == in.size()) return {expected_frame::eof};
  if (in.size() - pos < 4) return {expected_frame::bad};
  std::uint64_t n = be(pos, 4);
  std::size_t head = 4;
  if (n == 0xffffffffU) {
    if (in.size() - pos < 12) return {expected_frame::bad};
    n = be(pos + 4, 8);
    head = 12;
  } else if (n > 0x7fffffffU) {
    return {expected_frame::bad};
  }
  if (n > cap || n > in.size() - pos - head) return {expected_frame::bad};
  return {expected_frame::message, pos + head, static_cast<std::size_t>(n)};
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  std::span<const std::uint8_t> stream{data + 1, std::min(size - 1, max_stream)};
  const int call = mode & 3;
  const bool socket = (mode & 4) != 0;
  const std::size_t param = mode >> 3; // 0..31

  const bool records = socket && (param & 1) != 0;
  // At least 1 KiB per record keeps the whole stream within the socket's buffer.
  const std::size_t record = 1024 + (param * 1543) % 8192;
  int fds[2] = {-1, -1};
  if (socket ? ::socketpair(AF_UNIX, (records ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC, 0,
                            fds) != 0
             : ::pipe2(fds, O_CLOEXEC) != 0)
    die("cannot create the pipe");
  // With a pipe, fds[0] is the read end; with a socketpair either end works.
  tandem::mp::connection reader{fds[0], true, false};
  reader.set_max_message_size(cap);
  // On a socket, also take shared-memory markers, as mp::pipe() ends do: raw bytes carry no
  // descriptor, so every marker must be refused however its descriptor reads.
  if (socket) reader.set_shared_memory_transfers(true);
  std::size_t written = 0;
  while (written < stream.size()) {
    std::size_t chunk = stream.size() - written;
    if (records) chunk = std::min(chunk, record);
    auto n = ::write(fds[1], stream.data() + written, chunk);
    if (n <= 0) die("cannot write the stream");
    written += static_cast<std::size_t>(n);
  }
  ::close(fds[1]);

  std::size_t pos = 0; // where the reference reading is; only kept for call 0
  std::array<std::byte, 40> small{};
  for (int i = 0; i < 1000; ++i) {
    try {
      switch (call) {
        case 0: {
          if (records) { // records frame differently: no stream reference, only the contract
            static_cast<void>(reader.recv_bytes());
            break;
          }
          auto want = expect(stream, pos);
          std::vector<std::byte> got;
          try {
            got = reader.recv_bytes();
          } catch (const tandem::eof_error&) {
            if (want.kind != expected_frame::eof) die("eof_error where the stream has more");
            throw;
          } catch (const tandem::bad_message_error&) {
            if (want.kind != expected_frame::bad) die("bad_message_error on a valid frame");
            throw;
          }
          if (want.kind != expected_frame::message) die("a message where there is none");
          if (got.size() != want.length ||
              (want.length != 0 &&
               std::memcmp(got.data(), stream.data() + want.begin, want.length) != 0))
            die("the message differs from the frame's bytes");
          pos = want.begin + want.length;
          break;
        }
        case 1: {
          auto got = reader.recv_bytes(param);
          if (got.size() > param) die("a message longer than maxlength");
          break;
        }
        case 2: {
          std::size_t offset = param % (small.size() + 1);
          auto n = reader.recv_bytes_into(small, offset);
          if (n > small.size() - offset) die("recv_bytes_into overran its buffer");
          break;
        }
        default: {
          if (!reader.poll(std::chrono::seconds{0})) die("poll is false on a closed stream");
          auto got = reader.recv_bytes(std::chrono::seconds{0}, cap);
          if (!got) die("timed recv_bytes gave nothing on a closed stream");
          break;
        }
      }
    } catch (const tandem::buffer_too_short_error& e) {
      if (e.message().size() > cap) die("buffer_too_short_error carries more than the cap");
    } catch (const tandem::error&) {
      // eof, a corrupt frame, maxlength exceeded, or a broken connection: the stream is done.
      break;
    }
  }
  return 0;
}
