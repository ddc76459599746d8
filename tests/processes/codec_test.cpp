// tandem::mp::detail codec: round trips of every builtin, containers and user structs, the wire
// format's fixed points, and the decoder's refusals of truncated, corrupt, oversized and
// mistyped input.
#include <tandem/error.hpp>
#include <tandem/mp/detail/codec.hpp>

#include <doctest/doctest.h>

#include <caf/error.hpp>
#include <caf/sec.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace codec = tandem::mp::detail;

namespace {

struct point {
  std::int32_t x = 0;
  std::int32_t y = 0;
  std::string label;
  std::vector<double> weights;
  friend bool operator==(const point&, const point&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, point& p) {
  return f(caf::meta::type_name("point"), p.x, p.y, p.label, p.weights);
}

// A type whose inspect refuses negative values, in both directions.
struct positive {
  std::int32_t value = 1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, positive& p) {
  auto check = [&p]() -> caf::error {
    if (p.value < 0) return caf::make_error(caf::sec::invalid_argument);
    return caf::none;
  };
  return f(caf::meta::save_callback(check), p.value, caf::meta::load_callback(check));
}

// A recursive type: a tree nests as deeply as its message says.
struct tree {
  std::vector<tree> children;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tree& t) {
  return f(t.children);
}

enum class color : std::uint8_t { red = 1, green = 2 };

template <class... Ts>
std::vector<std::byte> encoded(const Ts&... xs) {
  std::vector<std::byte> out;
  codec::encode(out, xs...);
  return out;
}

template <class T>
T round_trip(const T& x) {
  return std::get<0>(codec::decode<T>(encoded(x)));
}

std::vector<std::byte> raw(std::initializer_list<int> xs) {
  std::vector<std::byte> out;
  for (int x : xs) out.push_back(static_cast<std::byte>(x));
  return out;
}

// The header of a message of the types Ts..., followed by `body`.
template <class... Ts>
std::vector<std::byte> with_header(const std::vector<std::byte>& body) {
  std::vector<std::byte> out{std::byte{codec::codec_version}};
  auto tag = codec::type_tag<Ts...>();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((tag >> (8 * i)) & 0xffU));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

} // namespace

TEST_SUITE("mp codec") {

  TEST_CASE("integers of every width round trip at their limits") {
    CHECK(round_trip(std::numeric_limits<std::int8_t>::min()) ==
          std::numeric_limits<std::int8_t>::min());
    CHECK(round_trip(std::numeric_limits<std::uint16_t>::max()) ==
          std::numeric_limits<std::uint16_t>::max());
    CHECK(round_trip(std::numeric_limits<std::int32_t>::min()) ==
          std::numeric_limits<std::int32_t>::min());
    CHECK(round_trip(std::numeric_limits<std::int64_t>::min()) ==
          std::numeric_limits<std::int64_t>::min());
    CHECK(round_trip(std::numeric_limits<std::uint64_t>::max()) ==
          std::numeric_limits<std::uint64_t>::max());
    CHECK(round_trip(true));
    CHECK_FALSE(round_trip(false));
    CHECK(round_trip('z') == 'z');
    CHECK(round_trip(color::green) == color::green);
  }

  TEST_CASE("integers are little-endian and fixed width after the header") {
    auto bytes = encoded(std::int32_t{0x01020304});

    REQUIRE(bytes.size() == codec::message_header_size + 4);
    CHECK(bytes[0] == std::byte{codec::codec_version});
    CHECK(codec::message_tag(bytes) == codec::type_tag<std::int32_t>());
    CHECK(bytes[9] == std::byte{0x04});
    CHECK(bytes[12] == std::byte{0x01});
  }

  TEST_CASE("floats keep every bit including signed zero infinities and NaN") {
    CHECK(round_trip(1.5F) == 1.5F);
    CHECK(round_trip(-0.0) == 0.0);
    CHECK(std::signbit(round_trip(-0.0)));
    CHECK(round_trip(std::numeric_limits<double>::infinity()) ==
          std::numeric_limits<double>::infinity());
    CHECK(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
    CHECK(round_trip(std::numeric_limits<double>::denorm_min()) ==
          std::numeric_limits<double>::denorm_min());
  }

  TEST_CASE("long double round trips exactly in the portable format") {
    for (long double v :
         {1.0L, -1.0L / 3.0L, std::numeric_limits<long double>::max(),
          std::numeric_limits<long double>::min(), std::numeric_limits<long double>::denorm_min(),
          std::numeric_limits<long double>::lowest(), 12345.678901234567891L}) {
      CAPTURE(static_cast<double>(v));
      CHECK(round_trip(v) == v);
    }
    CHECK(std::signbit(round_trip(-0.0L)));
    CHECK(round_trip(-std::numeric_limits<long double>::infinity()) ==
          -std::numeric_limits<long double>::infinity());
    CHECK(std::isnan(round_trip(std::numeric_limits<long double>::quiet_NaN())));
  }

  TEST_CASE("strings of every character type round trip including empty ones") {
    CHECK(round_trip(std::string{}).empty());
    CHECK(round_trip(std::string{"hello\0world", 11}) == std::string{"hello\0world", 11});
    CHECK(round_trip(std::u16string{u"\u00e9t\u00e9"}) == u"\u00e9t\u00e9");
    CHECK(round_trip(std::u32string{U"\U0001F600!"}) == U"\U0001F600!");
  }

  TEST_CASE("containers and user structs round trip") {
    std::map<std::string, std::vector<std::int64_t>> m{{"a", {1, 2, 3}}, {"", {}}, {"z", {-1}}};
    CHECK(round_trip(m) == m);
    std::vector<std::string> vs{"x", "", std::string(300, 'y')};
    CHECK(round_trip(vs) == vs);
    std::set<int> s{3, 1, 2};
    CHECK(round_trip(s) == s);
    std::vector<bool> bits{true, false, true, true, false, false, false, true, true};
    CHECK(round_trip(bits) == bits);
    std::pair<int, std::string> p{7, "seven"};
    CHECK(round_trip(p) == p);
    point pt{3, -4, "corner", {0.5, 1.5}};
    CHECK(round_trip(pt) == pt);
    std::vector<point> pts{pt, point{}, pt};
    CHECK(round_trip(pts) == pts);
    std::vector<double> ds{1.0, -2.5, 1e300};
    CHECK(round_trip(ds) == ds);
    std::vector<std::uint16_t> empty;
    CHECK(round_trip(empty).empty());
  }

  TEST_CASE("a block-copied vector has the bytes of the element by element encoding") {
    // A set goes element by element through CAF; a vector of the same numbers is one block.
    std::vector<std::int32_t> v{1, -2, 0x01020304};
    std::set<std::int32_t> s{1, -2, 0x01020304};
    std::vector<std::int32_t> sorted{-2, 1, 0x01020304};

    auto from_vector = encoded(sorted);
    auto from_set = encoded(s);

    CHECK(std::vector<std::byte>(from_vector.begin() + 9, from_vector.end()) ==
          std::vector<std::byte>(from_set.begin() + 9, from_set.end()));
    CHECK(round_trip(v) == v);
  }

  TEST_CASE("several values make one message decoded in the same order") {
    auto bytes = encoded(1, std::string{"two"}, 3.0);

    auto [a, b, c] = codec::decode<int, std::string, double>(bytes);

    CHECK(a == 1);
    CHECK(b == "two");
    CHECK(c == 3.0);
    CHECK(codec::type_tag<int, std::string, double>() != codec::type_tag<int, std::string>());
  }

  TEST_CASE("a message of another type is a bad_message_error naming the expected type") {
    auto bytes = encoded(std::string{"text"});

    CHECK_THROWS_AS(codec::decode<int>(bytes), tandem::bad_message_error);
    try {
      codec::decode<std::vector<int>>(bytes);
      FAIL("decode accepted a message of another type");
    } catch (const tandem::bad_message_error& e) {
      CHECK(std::string{e.what()}.find("std::vector<int") != std::string::npos);
      CHECK(e.code() == tandem::errc::bad_message);
    }
  }

  TEST_CASE("every truncation of a valid message is a bad_message_error") {
    point pt{1, 2, "label", {1.0, 2.0}};
    auto bytes = encoded(pt, std::map<std::string, std::vector<std::int64_t>>{{"k", {5}}});

    for (std::size_t n = 0; n < bytes.size(); ++n) {
      CAPTURE(n);
      std::span<const std::byte> cut{bytes.data(), n};
      CHECK_THROWS_AS((codec::decode<point, std::map<std::string, std::vector<std::int64_t>>>(cut)),
                      tandem::bad_message_error);
    }
  }

  TEST_CASE("trailing bytes and an unknown version are refused") {
    auto bytes = encoded(7);
    bytes.push_back(std::byte{0});
    CHECK_THROWS_AS(codec::decode<int>(bytes), tandem::bad_message_error);

    bytes = encoded(7);
    bytes[0] = std::byte{99};
    CHECK_THROWS_AS(codec::decode<int>(bytes), tandem::bad_message_error);
    CHECK_FALSE(codec::message_tag(bytes).has_value());
    CHECK_THROWS_AS(codec::decode<int>(std::span<const std::byte>{}), tandem::bad_message_error);
  }

  TEST_CASE("a huge declared length is refused before anything is allocated") {
    // 2^63 elements as a 10-byte varint, then nothing.
    auto huge = raw({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01});

    CHECK_THROWS_AS(codec::decode<std::string>(with_header<std::string>(huge)),
                    tandem::bad_message_error);
    CHECK_THROWS_AS(
        codec::decode<std::vector<std::string>>(with_header<std::vector<std::string>>(huge)),
        tandem::bad_message_error);
    CHECK_THROWS_AS(
        codec::decode<std::vector<std::int64_t>>(with_header<std::vector<std::int64_t>>(huge)),
        tandem::bad_message_error);
    CHECK_THROWS_AS(codec::decode<std::u32string>(with_header<std::u32string>(huge)),
                    tandem::bad_message_error);
    // A length one past what is left, and a varint longer than 64 bits.
    CHECK_THROWS_AS(codec::decode<std::string>(with_header<std::string>(raw({3, 'a', 'b'}))),
                    tandem::bad_message_error);
    CHECK_THROWS_AS(
        codec::decode<std::u16string>(with_header<std::u16string>(raw({2, 'a', 0, 'b'}))),
        tandem::bad_message_error);
    // A vector of 1000 bits needs 125 bytes, not 1; and a vector of chars is no vector of bits.
    CHECK_THROWS_AS(codec::decode<std::vector<bool>>(
                        with_header<std::vector<bool>>(raw({0xe8, 0x07, 1, 0xff}))),
                    tandem::bad_message_error);
    CHECK_THROWS_AS(
        codec::decode<std::vector<char>>(with_header<std::vector<char>>(raw({9, 'a', 'b'}))),
        tandem::bad_message_error);
    auto overlong = raw({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f});
    CHECK_THROWS_AS(codec::decode<std::string>(with_header<std::string>(overlong)),
                    tandem::bad_message_error);
  }

  TEST_CASE("a length that fits the bytes left decodes") {
    CHECK(std::get<0>(codec::decode<std::string>(with_header<std::string>(raw({2, 'o', 'k'})))) ==
          "ok");
    // A varint may use more bytes than it needs.
    CHECK(std::get<0>(
              codec::decode<std::string>(with_header<std::string>(raw({0x81, 0x00, 'x'})))) == "x");
  }

  TEST_CASE("an unknown long double class is refused") {
    CHECK_THROWS_AS(codec::decode<long double>(with_header<long double>(raw({8}))),
                    tandem::bad_message_error);
  }

  TEST_CASE("a deeply nested recursive value is refused instead of overflowing the stack") {
    // Each level is a sequence of one child: 1 byte per level, far more levels than the stack
    // budget allows.
    std::vector<std::byte> body(200'000, std::byte{1});
    body.push_back(std::byte{0});

    CHECK_THROWS_AS(codec::decode<tree>(with_header<tree>(body)), tandem::bad_message_error);

    tree shallow;
    shallow.children.resize(2);
    shallow.children[0].children.resize(3);
    auto back = round_trip(shallow);
    REQUIRE(back.children.size() == 2);
    CHECK(back.children[0].children.size() == 3);
  }

  TEST_CASE("an inspect error throws value_error in encode and leaves the buffer as it was") {
    std::vector<std::byte> out;
    codec::encode(out, 1);
    auto before = out;

    CHECK_THROWS_AS(codec::encode(out, 2, positive{-5}), tandem::value_error);
    CHECK(out == before);
  }

  TEST_CASE("an inspect error while decoding is a bad_message_error") {
    // Encode a valid positive, then patch its value to negative in the bytes.
    auto bytes = encoded(positive{5});
    bytes[9] = std::byte{0xff};
    bytes[12] = std::byte{0xff};

    CHECK_THROWS_AS(codec::decode<positive>(bytes), tandem::bad_message_error);
  }

  TEST_CASE("the type tag is stable and distinguishes types") {
    CHECK(codec::type_tag<int>() == codec::type_tag<int>());
    CHECK(codec::type_tag<int>() != codec::type_tag<unsigned>());
    CHECK(codec::type_tag<std::string>() != codec::type_tag<std::vector<char>>());
    CHECK(codec::type_tag<int, int>() != codec::type_tag<int>());
    CHECK(codec::type_names<int, std::string>().find("int") == 0);
  }
}
