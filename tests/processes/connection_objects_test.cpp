// tandem::mp::connection, objects API: send(obj) and recv<T>() with and without timeouts and stop
// tokens, between threads of one process (the cross-process cases live with the process tests).
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/pipe.hpp>

#include <doctest/doctest.h>

#include <caf/error.hpp>
#include <caf/sec.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct job {
  std::string name;
  std::int64_t id = 0;
  std::vector<double> args;
  std::map<std::string, std::string> env;
  friend bool operator==(const job&, const job&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job& x) {
  return f(caf::meta::type_name("job"), x.name, x.id, x.args, x.env);
}

// Refuses to be saved, like a type whose inspect validates its state.
struct unsendable {
  int value = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, unsendable& x) {
  return f(caf::meta::save_callback(
               []() -> caf::error { return caf::make_error(caf::sec::invalid_argument); }),
           x.value);
}

} // namespace

TEST_SUITE("mp connection objects") {

  TEST_CASE("numbers strings vectors and maps round trip through a pipe") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    std::map<std::string, std::vector<std::int64_t>> m{{"primes", {2, 3, 5}}, {"none", {}}};

    a.send(42);
    a.send(-1.25);
    a.send(std::string{"hello"});
    a.send(std::vector<std::string>{"x", "", "z"});
    a.send(m);
    a.send("a literal");

    CHECK(b.recv<int>() == 42);
    CHECK(b.recv<double>() == -1.25);
    CHECK(b.recv<std::string>() == "hello");
    CHECK(b.recv<std::vector<std::string>>() == std::vector<std::string>{"x", "", "z"});
    CHECK(b.recv<std::map<std::string, std::vector<std::int64_t>>>() == m);
    CHECK(b.recv<std::string>() == "a literal");
    CHECK_FALSE(b.poll());
  }

  TEST_CASE("a user struct with inspect round trips both ways on a duplex pipe") {
    tandem::test::watchdog guard{10s};
    auto [a, b] = tandem::mp::pipe();
    job sent{"build", 7, {1.0, 2.5}, {{"CC", "gcc"}}};

    std::thread peer{[&conn = b] { conn.send(conn.recv<job>()); }};
    a.send(sent);
    auto echoed = a.recv<job>();
    peer.join();

    CHECK(echoed == sent);
  }

  TEST_CASE("a message of another type is a bad_message_error and the connection stays usable") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    writer.send(std::string{"not a number"});
    writer.send(5);

    CHECK_THROWS_AS(reader.recv<int>(), tandem::bad_message_error);
    CHECK(reader.recv<int>() == 5);
  }

  TEST_CASE("a byte message that is no object is a bad_message_error and the next one decodes") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    writer.send_bytes({});
    std::vector<std::byte> junk(20, std::byte{0x5a});
    writer.send_bytes(junk);
    writer.send(std::string{"fine"});

    CHECK_THROWS_AS(reader.recv<std::string>(), tandem::bad_message_error);
    CHECK_THROWS_AS(reader.recv<std::string>(), tandem::bad_message_error);
    CHECK(reader.recv<std::string>() == "fine");
  }

  TEST_CASE("empty objects are messages of their own and keep their boundaries") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);

    writer.send(std::string{});
    writer.send(std::vector<int>{});
    writer.send(std::string{"after"});

    CHECK(reader.recv<std::string>().empty());
    CHECK(reader.recv<std::vector<int>>().empty());
    CHECK(reader.recv<std::string>() == "after");
  }

  TEST_CASE("every pending object is received before the eof_error") {
    tandem::test::watchdog guard{10s};
    for (bool duplex : {true, false}) {
      CAPTURE(duplex);
      auto [reader, writer] = tandem::mp::pipe(duplex);
      writer.send(1);
      writer.send(std::string{"two"});
      writer.close();

      CHECK(reader.recv<int>() == 1);
      CHECK(reader.recv<std::string>() == "two");
      CHECK_THROWS_AS(reader.recv<int>(), tandem::eof_error);
      CHECK_THROWS_AS(reader.recv<int>(1s), tandem::eof_error);
    }
  }

  TEST_CASE("a 17 MiB object makes a round trip intact") {
    tandem::test::watchdog guard{60s};
    auto [a, b] = tandem::mp::pipe();
    std::vector<std::uint32_t> big((std::size_t{17} << 20) / sizeof(std::uint32_t));
    for (std::size_t i = 0; i < big.size(); ++i)
      big[i] = static_cast<std::uint32_t>(i * 2654435761U);
    std::string text(std::size_t{16} << 20, 'q');
    text.back() = '!';

    std::thread peer{[&conn = b] {
      conn.send(conn.recv<std::vector<std::uint32_t>>());
      conn.send(conn.recv<std::string>());
    }};
    a.send(big);
    auto back = a.recv<std::vector<std::uint32_t>>();
    a.send(text);
    auto text_back = a.recv<std::string>();
    peer.join();

    CHECK(back == big);
    CHECK(text_back == text);
  }

  TEST_CASE("an object larger than max_message_size is refused before allocation") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    reader.set_max_message_size(64);

    writer.send(std::string(100, 'x'));

    CHECK_THROWS_AS(reader.recv<std::string>(), tandem::bad_message_error);
    // The body is still in the stream: the connection is broken, as for bytes.
    CHECK_THROWS_AS(reader.recv<std::string>(), tandem::usage_error);
  }

  TEST_CASE("recv with a timeout returns nullopt without a message and the object with one") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);

    auto start = std::chrono::steady_clock::now();
    auto none = reader.recv<int>(100ms);
    auto waited = std::chrono::steady_clock::now() - start;
    CHECK_FALSE(none.has_value());
    CHECK(waited >= 60ms);
    CHECK(waited < 1s);
    CHECK_FALSE(reader.recv<int>(-5s).has_value());

    std::thread sender{[&conn = writer] {
      std::this_thread::sleep_for(50ms); // lets the receiver block first; either order passes
      conn.send(9);
    }};
    auto got = reader.recv<int>(5s);
    sender.join();
    REQUIRE(got.has_value());
    CHECK(*got == 9);
  }

  TEST_CASE("recv_bytes with a timeout returns nullopt and then the message") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);

    CHECK_FALSE(reader.recv_bytes(0s).has_value());
    std::vector<std::byte> msg(3, std::byte{7});
    writer.send_bytes(msg);
    auto got = reader.recv_bytes(1s);
    REQUIRE(got.has_value());
    CHECK(*got == msg);
  }

  TEST_CASE("a stop request makes a blocked recv return nullopt promptly") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);
    std::stop_source source;
    std::atomic<bool> returned{false};
    std::optional<int> got{1};

    std::thread receiver{[&, &conn = reader] {
      got = conn.recv<int>(source.get_token());
      returned = true;
    }};
    std::this_thread::sleep_for(50ms); // gives the receiver time to block; not needed to pass
    CHECK_FALSE(returned.load());
    auto start = std::chrono::steady_clock::now();
    source.request_stop();
    receiver.join();

    CHECK_FALSE(got.has_value());
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    writer.send(3);
    CHECK(reader.recv<int>(std::stop_token{}, 1s) == std::optional<int>{3});
    CHECK_FALSE(reader.recv_bytes(source.get_token(), 1s).has_value());
  }

  TEST_CASE("an object whose inspect fails throws value_error in send and sends nothing") {
    tandem::test::watchdog guard{10s};
    auto [reader, writer] = tandem::mp::pipe(false);

    CHECK_THROWS_AS(writer.send(unsendable{}), tandem::value_error);
    CHECK_FALSE(reader.poll());
  }
}
