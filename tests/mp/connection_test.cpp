// tandem::mp::connection and tandem::mp::pipe, bytes API: the Pipe and Connection cases of
// CPython's _test_multiprocessing.py that apply to bytes, run in one process with threads, plus
// the framing's defences against corrupt and truncated streams.
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/pipe.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> out(s.size());
  if (!s.empty()) // memcpy from or to a null pointer is undefined even for zero bytes
    std::memcpy(out.data(), s.data(), s.size());
  return out;
}

std::string text(const std::vector<std::byte>& b) {
  if (b.empty()) return {};
  return {reinterpret_cast<const char*>(b.data()), b.size()}; // NOLINT
}

// Writes raw bytes to a descriptor, bypassing the framing.
void write_raw(int fd, const std::vector<unsigned char>& raw) {
  REQUIRE(::write(fd, raw.data(), raw.size()) == static_cast<ssize_t>(raw.size()));
}

} // namespace

TEST_SUITE("mp connection") {

  TEST_CASE("a duplex pipe carries messages both ways") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();

    a.send_bytes(bytes("ping"));
    b.send_bytes(bytes("pong"));

    CHECK(text(b.recv_bytes()) == "ping");
    CHECK(text(a.recv_bytes()) == "pong");
    CHECK(a.readable());
    CHECK(a.writable());
    CHECK(b.readable());
    CHECK(b.writable());
  }

  TEST_CASE("a one-way pipe gives the reader first and the writer second") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);

    writer.send_bytes(bytes("hello"));

    CHECK(text(reader.recv_bytes()) == "hello");
    CHECK(reader.readable());
    CHECK_FALSE(reader.writable());
    CHECK(writer.writable());
    CHECK_FALSE(writer.readable());
  }

  TEST_CASE("the wrong direction of a one-way pipe is a usage_error") {
    auto [reader, writer] = tandem::mp::pipe(false);

    CHECK_THROWS_AS(reader.send_bytes(bytes("x")), tandem::usage_error);
    CHECK_THROWS_AS(writer.recv_bytes(), tandem::usage_error);
    CHECK_THROWS_AS(writer.poll(), tandem::usage_error);
    std::array<std::byte, 4> buf{};
    CHECK_THROWS_AS(writer.recv_bytes_into(buf), tandem::usage_error);
  }

  TEST_CASE("message boundaries are kept and messages arrive in order") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    std::vector<std::string> sent{"a", "", "bc", "def", std::string(1000, 'x'), ""};

    for (const auto& s : sent) a.send_bytes(bytes(s));

    for (const auto& s : sent) CHECK(text(b.recv_bytes()) == s);
    CHECK_FALSE(b.poll());
  }

  TEST_CASE("a zero-length message is received as an empty message") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);

    writer.send_bytes({});

    CHECK(reader.poll());
    CHECK(reader.recv_bytes().empty());
    CHECK_FALSE(reader.poll());
  }

  TEST_CASE("pending messages are read before the eof_error") {
    tandem::test::watchdog guard{10s};
    for (bool duplex : {true, false}) {
      CAPTURE(duplex);
      auto [reader, writer] = tandem::mp::pipe(duplex);
      writer.send_bytes(bytes("one"));
      writer.send_bytes(bytes("two"));

      writer.close();

      CHECK(text(reader.recv_bytes()) == "one");
      CHECK(text(reader.recv_bytes()) == "two");
      CHECK(reader.poll());
      CHECK_THROWS_AS(reader.recv_bytes(), tandem::eof_error);
      CHECK_THROWS_AS(reader.recv_bytes(), tandem::eof_error);
    }
  }

  TEST_CASE("a 16 MiB message makes a round trip through a thread") {
    tandem::test::watchdog guard{30s};
    for (bool duplex : {true, false}) {
      CAPTURE(duplex);
      auto [a, b] = tandem::mp::pipe();
      auto [reader, writer] = tandem::mp::pipe(duplex);
      std::vector<std::byte> big(16u << 20);
      for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>((i * 131) % 251);

      // The peer echoes what it reads on `reader` back through `b`.
      std::thread peer{[&, &r = reader, &bb = b] { bb.send_bytes(r.recv_bytes()); }};
      writer.send_bytes(big);
      auto echoed = a.recv_bytes();
      peer.join();

      CHECK(echoed.size() == big.size());
      CHECK(echoed == big);
    }
  }

  TEST_CASE("two threads exchange many messages over a duplex pipe") {
    tandem::test::watchdog guard{30s};
    auto [a, b] = tandem::mp::pipe();
    constexpr int rounds = 2000;

    // The peer answers every message with the same bytes reversed, until an empty message.
    std::thread peer{[&bb = b] {
      for (;;) {
        auto m = bb.recv_bytes();
        if (m.empty()) return;
        std::reverse(m.begin(), m.end());
        bb.send_bytes(m);
      }
    }};
    int good = 0;
    for (int i = 0; i < rounds; ++i) {
      auto s = std::to_string(i) + "-" + std::string(static_cast<std::size_t>(i % 97), 'z');
      a.send_bytes(bytes(s));
      std::string r = text(a.recv_bytes());
      std::reverse(r.begin(), r.end());
      good += r == s ? 1 : 0;
    }
    a.send_bytes({});
    peer.join();

    CHECK(good == rounds);
  }

  TEST_CASE("send_bytes sends the slice given by offset and size") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    auto msg = bytes("abcdefghijklmnopqrstuvwxyz");

    a.send_bytes(msg);
    a.send_bytes(msg, 5);
    a.send_bytes(msg, 7, 10);
    a.send_bytes(msg, 26);
    a.send_bytes(msg, 0, 0);

    CHECK(text(b.recv_bytes()) == "abcdefghijklmnopqrstuvwxyz");
    CHECK(text(b.recv_bytes()) == "fghijklmnopqrstuvwxyz");
    CHECK(text(b.recv_bytes()) == "hijklmnopq");
    CHECK(b.recv_bytes().empty());
    CHECK(b.recv_bytes().empty());
  }

  TEST_CASE("send_bytes refuses an offset or size past the buffer") {
    auto [a, b] = tandem::mp::pipe();
    auto msg = bytes("abcdefghijklmnopqrstuvwxyz");

    CHECK_THROWS_AS(a.send_bytes(msg, 27), tandem::value_error);
    CHECK_THROWS_AS(a.send_bytes(msg, 0, 27), tandem::value_error);
    CHECK_THROWS_AS(a.send_bytes(msg, 26, 1), tandem::value_error);
    CHECK_THROWS_AS(a.send_bytes(msg, 10, 17), tandem::value_error);

    CHECK_FALSE(b.poll());
  }

  TEST_CASE("poll reports data and EOF and times out without them") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();

    CHECK_FALSE(b.poll());
    CHECK_FALSE(b.poll(-1s));
    auto start = std::chrono::steady_clock::now();
    CHECK_FALSE(b.poll(100ms));
    auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= 60ms);
    CHECK(waited < 1s);

    a.send_bytes(bytes("x"));
    CHECK(b.poll());
    CHECK(b.poll(0s));
    CHECK(b.poll(tandem::forever));
    CHECK(text(b.recv_bytes()) == "x");
    CHECK_FALSE(b.poll());

    a.close();
    CHECK(b.poll());
    CHECK(b.poll(tandem::forever));
    CHECK_THROWS_AS(b.recv_bytes(), tandem::eof_error);
  }

  TEST_CASE("poll with a timeout wakes when a message arrives from another thread") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    std::atomic<pid_t> poller{0};
    bool ready = false;

    std::thread t{[&, &bb = b] {
      poller = tandem::test::tid();
      ready = bb.poll(8s);
    }};
    REQUIRE(tandem::test::wait_until([&] { return poller.load() != 0; }));
    pid_t tid = poller.load();
    REQUIRE(tandem::test::wait_until_blocked(std::span{&tid, 1}, 5s));
    auto start = std::chrono::steady_clock::now();
    a.send_bytes(bytes("wake"));
    t.join();

    CHECK(ready);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
  }

  TEST_CASE("a stop request makes a blocked poll return false promptly") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    std::stop_source stop;
    std::atomic<pid_t> poller{0};
    std::atomic<int> result{-1};

    std::thread t{[&, &bb = b] {
      poller = tandem::test::tid();
      result = bb.poll(stop.get_token(), tandem::forever) ? 1 : 0;
    }};
    REQUIRE(tandem::test::wait_until([&] { return poller.load() != 0; }));
    pid_t tid = poller.load();
    REQUIRE(tandem::test::wait_until_blocked(std::span{&tid, 1}, 5s));
    stop.request_stop();
    t.join();

    CHECK(result == 0);
  }

  TEST_CASE("poll with a stop token sees data and honours an earlier stop") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    std::stop_source stop;

    CHECK_FALSE(b.poll(stop.get_token(), 50ms));
    a.send_bytes(bytes("x"));
    CHECK(b.poll(stop.get_token(), tandem::forever));
    CHECK(b.poll(std::stop_token{}, 0s));
    stop.request_stop();
    CHECK_FALSE(b.poll(stop.get_token(), tandem::forever));
    CHECK(text(b.recv_bytes()) == "x");
  }

  TEST_CASE("recv_bytes_into writes the message at the offset and returns its length") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    std::vector<std::byte> buf(16, std::byte{'.'});

    a.send_bytes(bytes("hello"));
    a.send_bytes(bytes("world"));
    a.send_bytes(bytes(""));

    CHECK(b.recv_bytes_into(buf) == 5);
    CHECK(b.recv_bytes_into(buf, 8) == 5);
    CHECK(b.recv_bytes_into(buf, 16) == 0);
    CHECK(text(buf) == "hello...world...");
  }

  TEST_CASE("recv_bytes_into a buffer too short throws buffer_too_short_error with the message") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    std::vector<std::byte> buf(8, std::byte{'.'});
    a.send_bytes(bytes("0123456789"));
    a.send_bytes(bytes("next"));

    try {
      b.recv_bytes_into(buf, 4);
      FAIL("no buffer_too_short_error");
    } catch (const tandem::buffer_too_short_error& e) {
      CHECK(text(e.message()) == "0123456789");
      CHECK(e.code() == tandem::errc::buffer_too_short);
    }

    CHECK(text(buf) == "........");
    CHECK(b.recv_bytes_into(buf, 4) == 4);
    CHECK(text(buf) == "....next");
  }

  TEST_CASE("recv_bytes_into refuses an offset past the buffer without reading") {
    auto [a, b] = tandem::mp::pipe();
    std::vector<std::byte> buf(4);
    a.send_bytes(bytes("ok"));

    CHECK_THROWS_AS(b.recv_bytes_into(buf, 5), tandem::value_error);

    CHECK(text(b.recv_bytes()) == "ok");
  }

  TEST_CASE("a message longer than maxlength is a value_error and the connection is unusable") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    a.send_bytes(bytes("12345"));
    a.send_bytes(bytes("123456"));
    CHECK(text(b.recv_bytes(5)) == "12345");

    CHECK_THROWS_AS(b.recv_bytes(5), tandem::value_error);

    CHECK_THROWS_AS(b.recv_bytes(), tandem::usage_error);
    CHECK_THROWS_AS(b.poll(), tandem::usage_error);
    a.send_bytes(bytes("still sendable the other way"));
    b.send_bytes(bytes("and back"));
    CHECK(text(a.recv_bytes()) == "and back");
  }

  TEST_CASE("a closed connection throws usage_error and closing twice is harmless") {
    auto [a, b] = tandem::mp::pipe();
    CHECK_FALSE(a.closed());
    CHECK(a.fileno() >= 0);

    a.close();
    a.close();

    CHECK(a.closed());
    CHECK(a.readable());
    CHECK(a.writable());
    CHECK_THROWS_AS(a.fileno(), tandem::usage_error);
    CHECK_THROWS_AS(a.send_bytes(bytes("x")), tandem::usage_error);
    CHECK_THROWS_AS(a.recv_bytes(), tandem::usage_error);
    CHECK_THROWS_AS(a.poll(), tandem::usage_error);
    tandem::mp::connection def;
    CHECK(def.closed());
    CHECK_THROWS_AS(def.fileno(), tandem::usage_error);
  }

  TEST_CASE("a moved-from connection is closed and the target owns the descriptor") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    int fd = a.fileno();

    tandem::mp::connection moved{std::move(a)};
    tandem::mp::connection assigned;
    assigned = std::move(moved);

    CHECK(a.closed());     // NOLINT(bugprone-use-after-move): a moved-from connection is closed
    CHECK(moved.closed()); // NOLINT(bugprone-use-after-move)
    CHECK(assigned.fileno() == fd);
    assigned.send_bytes(bytes("moved"));
    CHECK(text(b.recv_bytes()) == "moved");
  }

  TEST_CASE("the destructor closes the descriptor so the peer sees EOF") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    {
      auto gone = std::move(writer);
      gone.send_bytes(bytes("last"));
    }

    CHECK(text(reader.recv_bytes()) == "last");
    CHECK_THROWS_AS(reader.recv_bytes(), tandem::eof_error);
  }

  TEST_CASE("sending to a closed peer throws EPIPE and does not kill the process") {
    tandem::test::watchdog guard{10s};
    for (bool duplex : {true, false}) {
      CAPTURE(duplex);
      auto [reader, writer] = tandem::mp::pipe(duplex);
      reader.close();

      try {
        writer.send_bytes(bytes("nobody listens"));
        FAIL("no error for a closed peer");
      } catch (const tandem::error& e) {
        CHECK(e.code() == std::error_code(EPIPE, std::system_category()));
      }
      // The SIGPIPE the write raised was consumed, not left pending for later.
      sigset_t pending;
      sigemptyset(&pending);
      REQUIRE(sigpending(&pending) == 0);
      CHECK(sigismember(&pending, SIGPIPE) == 0);
      // The process is still alive and a second attempt fails the same way.
      CHECK_THROWS_AS(writer.send_bytes(std::vector<std::byte>(1 << 20)), tandem::error);
    }
  }

  TEST_CASE("a reserved negative length header is a bad_message_error") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    // -3: -1 announces an extended header and -2 a shared-memory marker; the rest is reserved.
    write_raw(a.fileno(), {0xff, 0xff, 0xff, 0xfd, 'j', 'u', 'n', 'k'});

    CHECK_THROWS_AS(b.recv_bytes(), tandem::bad_message_error);

    CHECK_THROWS_AS(b.recv_bytes(), tandem::usage_error);
  }

  TEST_CASE("a length above the cap is a bad_message_error before any allocation") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    // 2 GiB - 1 in the short header, and 2^62 in the extended one: both above the 1 GiB cap.
    auto [c, d] = tandem::mp::pipe();
    write_raw(a.fileno(), {0x7f, 0xff, 0xff, 0xff});
    write_raw(c.fileno(), {0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0});

    CHECK(b.max_message_size() == std::size_t{1} << 30);
    CHECK_THROWS_AS(b.recv_bytes(), tandem::bad_message_error);
    std::array<std::byte, 4> buf{};
    CHECK_THROWS_AS(d.recv_bytes_into(buf), tandem::bad_message_error);

    CHECK_THROWS_AS(b.recv_bytes(), tandem::usage_error);
    CHECK_THROWS_AS(d.recv_bytes(), tandem::usage_error);
  }

  TEST_CASE("the cap is configurable") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    b.set_max_message_size(4);
    a.send_bytes(bytes("four"));
    a.send_bytes(bytes("five!"));

    CHECK(text(b.recv_bytes()) == "four");
    CHECK_THROWS_AS(b.recv_bytes(), tandem::bad_message_error);
  }

  TEST_CASE("a frame truncated by the peer closing is a bad_message_error") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    auto [c, d] = tandem::mp::pipe();
    write_raw(a.fileno(), {0, 0, 0, 10, 'a', 'b', 'c'});
    write_raw(c.fileno(), {0, 0});

    a.close();
    c.close();

    CHECK_THROWS_AS(b.recv_bytes(), tandem::bad_message_error);
    CHECK_THROWS_AS(d.recv_bytes(), tandem::bad_message_error);
    CHECK_THROWS_AS(b.recv_bytes(), tandem::usage_error);
  }

  TEST_CASE("the wire format is Python's length-prefixed framing") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    a.send_bytes(bytes("hi"));
    std::array<unsigned char, 6> raw{};

    REQUIRE(::read(b.fileno(), raw.data(), raw.size()) == 6);

    CHECK(raw == std::array<unsigned char, 6>{0, 0, 0, 2, 'h', 'i'});
    write_raw(a.fileno(), {0, 0, 0, 3, 'a', 'b', 'c'});
    CHECK(text(b.recv_bytes()) == "abc");
  }

  TEST_CASE("a connection built from a descriptor with no direction is a value_error") {
    CHECK_THROWS_AS(tandem::mp::connection(-1, true, true), tandem::value_error);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    ::close(fds[1]);
    CHECK_THROWS_AS(tandem::mp::connection(fds[0], false, false), tandem::value_error);
    // The descriptor was taken and closed.
    CHECK(::fcntl(fds[0], F_GETFD) == -1);
  }
}
