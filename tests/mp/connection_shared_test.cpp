// Large messages through shared memory between the ends of an mp::pipe(): intact, in order,
// mixed with streamed ones, and never trusted: markers from a peer that lies are refused.
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/pipe.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>((i * 131 + seed) % 251);
  return out;
}

// A raw shared-memory marker: header -2, then area id, first chunk, reserved, length.
std::array<std::byte, 28> marker(std::uint64_t id, std::uint32_t first, std::uint64_t length) {
  std::array<std::byte, 28> m{};
  for (std::size_t i = 0; i < 4; ++i) m[i] = std::byte{0xff};
  m[3] = std::byte{0xfe};
  std::uint32_t reserved = 0;
  std::memcpy(m.data() + 4, &id, 8);
  std::memcpy(m.data() + 12, &first, 4);
  std::memcpy(m.data() + 16, &reserved, 4);
  std::memcpy(m.data() + 20, &length, 8);
  return m;
}

// Sends `bytes` on `fd` with `passed` attached as SCM_RIGHTS (none when negative).
void send_with_fd(int fd, std::span<const std::byte> bytes, int passed) {
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()}; // NOLINT: iovec is not const
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  if (passed >= 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &passed, sizeof passed);
  }
  REQUIRE(::sendmsg(fd, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
}

// Both ends of a socketpair: the sender raw (a lying peer), the receiver an mp connection that
// takes shared-memory transfers.
struct raw_peer {
  int raw = -1;
  tandem::mp::connection conn;
  raw_peer() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    raw = fds[0];
    conn = tandem::mp::connection{fds[1], true, true};
    conn.set_shared_memory_transfers(true);
  }
  raw_peer(const raw_peer&) = delete;
  raw_peer& operator=(const raw_peer&) = delete;
  ~raw_peer() { ::close(raw); }
};

} // namespace

TEST_SUITE("mp connection shared memory") {
  TEST_CASE("both ends of a pipe take shared-memory transfers and a descriptor does not") {
    auto [a, b] = tandem::mp::pipe();
    auto [r, w] = tandem::mp::pipe(false);
    CHECK(a.shared_memory_transfers());
    CHECK(b.shared_memory_transfers());
    CHECK(r.shared_memory_transfers());
    CHECK(w.shared_memory_transfers());
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    tandem::mp::connection plain{fds[0], true, true};
    tandem::mp::connection other{fds[1], true, true};
    CHECK_FALSE(plain.shared_memory_transfers());
  }

  TEST_CASE("shared-memory transfers on a pipe2 descriptor are a usage_error") {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    tandem::mp::connection reader{fds[0], true, false};
    tandem::mp::connection writer{fds[1], false, true};
    CHECK_THROWS_AS(reader.set_shared_memory_transfers(true), tandem::usage_error);
    CHECK_FALSE(reader.shared_memory_transfers());
    reader.set_shared_memory_transfers(false); // turning it off is always fine
  }

  TEST_CASE("large and small messages arrive intact and in order") {
    tandem::test::watchdog guard{30s};
    auto [reader, writer] = tandem::mp::pipe(false);
    // Sizes on both sides of the shared-memory threshold and of the area's 16 MiB capacity.
    const std::vector<std::size_t> sizes{10, 64u << 10,      (64u << 10) - 1, 1u << 20,
                                         3,  (1u << 20) + 7, 16u << 20,       (16u << 20) + 1,
                                         0,  5u << 20};
    std::thread sender{[&, &w = writer] {
      unsigned seed = 0;
      for (auto n : sizes) w.send_bytes(pattern(n, seed++));
    }};
    unsigned seed = 0;
    for (auto n : sizes) {
      CAPTURE(n);
      auto got = reader.recv_bytes();
      CHECK(got.size() == n);
      CHECK(got == pattern(n, seed++));
    }
    sender.join();
  }

  TEST_CASE("a sender blocked on full shared memory gets EPIPE when the reader closes") {
    tandem::test::watchdog guard{30s};
    auto [reader, writer] = tandem::mp::pipe(false);
    std::atomic<bool> epipe{false};
    std::atomic<int> sent{0};
    std::thread sender{[&, &w = writer] {
      try {
        for (int i = 0; i < 64; ++i) {
          w.send_bytes(pattern(1u << 20, 1));
          ++sent;
        }
      } catch (const tandem::error& e) {
        epipe = e.code() == std::error_code(EPIPE, std::system_category());
      }
    }};
    REQUIRE(reader.recv_bytes().size() == 1u << 20);
    // Wait until the sender has filled what it may and is blocked.
    while (sent.load() < 4) std::this_thread::yield();
    std::this_thread::sleep_for(100ms); // not synchronization: lets the sender reach its wait
    reader.close();
    sender.join();
    CHECK(epipe.load());
    CHECK(sent.load() < 64);
  }

  TEST_CASE("a sender that runs ahead of its reader waits for room and loses nothing") {
    tandem::test::watchdog guard{60s};
    auto [reader, writer] = tandem::mp::pipe(false);
    constexpr int count = 48; // 48 MiB in flight is three times the area
    std::thread sender{[&, &w = writer] {
      for (int i = 0; i < count; ++i) w.send_bytes(pattern(1u << 20, static_cast<unsigned>(i)));
    }};
    // Let the sender run ahead and fill the memory before anything is read.
    std::this_thread::sleep_for(50ms); // not synchronization: only makes the overflow likely
    std::vector<std::byte> buffer(1u << 20);
    for (int i = 0; i < count; ++i) {
      REQUIRE(reader.recv_bytes_into(buffer) == buffer.size());
      CHECK(buffer == pattern(1u << 20, static_cast<unsigned>(i)));
    }
    sender.join();
  }

  TEST_CASE("recv_bytes_into a short buffer keeps a shared-memory message in the exception") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    auto big = pattern(200u << 10, 9);
    writer.send_bytes(big);
    writer.send_bytes(pattern(100u << 10, 10));
    std::vector<std::byte> small(1000);
    try {
      reader.recv_bytes_into(small);
      FAIL("recv_bytes_into did not throw");
    } catch (const tandem::buffer_too_short_error& e) {
      CHECK(e.message() == big);
    }
    // The message was consumed whole: the next one follows.
    CHECK(reader.recv_bytes() == pattern(100u << 10, 10));
  }

  TEST_CASE("a shared-memory message longer than maxlength is a value_error") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    writer.send_bytes(pattern(100u << 10, 1));
    CHECK_THROWS_AS(reader.recv_bytes(1000), tandem::value_error);
    CHECK_THROWS_AS(reader.recv_bytes(), tandem::usage_error);
  }

  TEST_CASE("a shared-memory message above max_message_size is refused before it is read") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    reader.set_max_message_size(100u << 10);
    writer.send_bytes(pattern(200u << 10, 1));
    CHECK_THROWS_AS(reader.recv_bytes(), tandem::bad_message_error);
  }

  TEST_CASE("a marker on a connection without shared-memory transfers is a bad_message_error") {
    tandem::test::watchdog guard{10s};
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    tandem::mp::connection sender{fds[0], true, true};
    tandem::mp::connection receiver{fds[1], true, true};
    sender.set_shared_memory_transfers(true); // only one side: a misconfiguration

    sender.send_bytes(pattern(100u << 10, 2));

    CHECK_THROWS_AS(receiver.recv_bytes(), tandem::bad_message_error);
  }

  TEST_CASE("a marker naming memory that was never sent is a bad_message_error") {
    tandem::test::watchdog guard{10s};
    raw_peer p;
    auto m = marker(42, 0, 100u << 10);
    send_with_fd(p.raw, m, -1);
    CHECK_THROWS_AS(p.conn.recv_bytes(), tandem::bad_message_error);
    CHECK_THROWS_AS(p.conn.recv_bytes(), tandem::usage_error);
  }

  TEST_CASE("a marker carrying a descriptor that is not a sealed area is a bad_message_error") {
    tandem::test::watchdog guard{10s};
    SUBCASE("a pipe") {
      raw_peer p;
      int junk[2];
      REQUIRE(::pipe2(junk, O_CLOEXEC) == 0);
      send_with_fd(p.raw, marker(1, 0, 100u << 10), junk[0]);
      ::close(junk[0]);
      ::close(junk[1]);
      CHECK_THROWS_AS(p.conn.recv_bytes(), tandem::bad_message_error);
    }
    SUBCASE("an unsealed memory file that could shrink under the reader") {
      raw_peer p;
      int mem = ::memfd_create("not-an-area", MFD_CLOEXEC);
      REQUIRE(mem >= 0);
      REQUIRE(::ftruncate(mem, (16 << 20) + 4096) == 0);
      send_with_fd(p.raw, marker(1, 0, 100u << 10), mem);
      ::close(mem);
      CHECK_THROWS_AS(p.conn.recv_bytes(), tandem::bad_message_error);
    }
  }

  TEST_CASE("a marker pointing outside the area is refused before a byte is copied") {
    tandem::test::watchdog guard{10s};
    // A real area, announced by a real large message, then markers that overrun it.
    auto [a, b] = tandem::mp::pipe();
    a.send_bytes(pattern(100u << 10, 3));
    REQUIRE(b.recv_bytes() == pattern(100u << 10, 3));
    // Learn the area's id from a second marker read raw.
    a.send_bytes(pattern(100u << 10, 4));
    std::array<std::byte, 28> seen{};
    REQUIRE(::recv(b.fileno(), seen.data(), seen.size(), MSG_WAITALL) == 28);
    std::uint64_t id = 0;
    std::memcpy(&id, seen.data() + 4, 8);

    SUBCASE("past the last chunk") {
      auto m = marker(id, 63, 1u << 20);
      send_with_fd(a.fileno(), m, -1);
      CHECK_THROWS_AS(b.recv_bytes(), tandem::bad_message_error);
    }
    SUBCASE("a zero length") {
      auto m = marker(id, 0, 0);
      send_with_fd(a.fileno(), m, -1);
      CHECK_THROWS_AS(b.recv_bytes(), tandem::bad_message_error);
    }
  }

  TEST_CASE("a peer that dies after sending leaves its large messages readable") {
    tandem::test::watchdog guard{10s};
    auto reader = [] {
      auto [r, w] = tandem::mp::pipe(false);
      w.send_bytes(pattern(300u << 10, 5));
      return std::move(r); // w closes here, unmapping its side of the memory
    }();
    CHECK(reader.recv_bytes() == pattern(300u << 10, 5));
    CHECK_THROWS_AS(reader.recv_bytes(), tandem::eof_error);
  }

  TEST_CASE("a large send to a closed peer throws EPIPE") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    reader.close();
    try {
      writer.send_bytes(pattern(1u << 20, 6));
      FAIL("send_bytes did not throw");
    } catch (const tandem::error& e) {
      CHECK(e.code() == std::error_code(EPIPE, std::system_category()));
    }
  }
}
