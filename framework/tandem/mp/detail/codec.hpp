// tandem::mp::detail codec: how objects become pipe and queue messages, and back.
//
// Any type with a CAF 0.17 `inspect` overload (numbers, bool, enums, std::string, u16string,
// u32string, std containers, pairs, tuples, chrono durations, user structs) is encoded by a
// caf::serializer subclass into a compact format and decoded by a caf::deserializer subclass
// that trusts nothing it reads:
//
//   message  := version:u8 (= 1)  tag:u64  value...
//   tag      := FNV-1a (64 bit) of the mangled typeid names of the message's types, each followed
//               by ';': the same types give the same tag in every process of the same binary
//               (and of binaries built by compilers sharing the Itanium C++ ABI)
//   u8..u64, i8..i64          fixed width, little-endian (two's complement)
//   bool                      one byte, 0 or 1 (any non-zero byte decodes as true)
//   float, double             IEEE 754 bits as u32 / u64, little-endian
//   long double               portable, whatever the platform's format (x87 80-bit, IEEE quad,
//                             or double): class:u8 = 2 * kind + sign, kind 0 zero, 1 infinity,
//                             2 NaN, 3 finite; a finite value adds exponent:i32, hi:u64, lo:u64
//                             with |x| = hi * 2^(exponent - 64) + lo * 2^(exponent - 128)
//   sequence length           unsigned LEB128 varint (1 to 10 bytes, at most 2^64 - 1)
//   std::string               length, then the bytes
//   std::u16string/u32string  length, then each code unit as u16 / u32
//   containers                length, then the elements (CAF's begin_sequence)
//   CAF objects               type number:u16, and when it is 0 the type name as a string
//
// Decoding checks every declared length against the bytes that are left before it allocates or
// loops: a sequence of n elements needs at least n bytes (a std::vector<bool> of n bits n / 8),
// a string of n characters n bytes, a u16string 2n and a u32string 4n. So decoding allocates at
// most a small constant factor (the in-memory size of an element per input byte) over the input
// size and never runs away on a hostile length. Nesting that would use more than 512 KiB of stack
// (a recursive type fed a deeply nested message) is refused too. CAF 0.17's own binary_deserializer
// allocates a declared length before checking it, so it is never used here.
//
// Errors: decode throws tandem::bad_message_error for truncated or corrupt input, trailing bytes,
// an unknown version, or a message of other types (the tag differs; the message names the types
// that were expected). A message of another type is a bad_message_error rather than a
// value_error because the caller did nothing wrong: the bytes it received do not hold what it
// asked for, as Python's unpickling raises on garbage. encode throws tandem::value_error when an
// inspect overload reports an error, and then leaves `out` as it was.
//
// Example:
//   std::vector<std::byte> buf;
//   tandem::mp::detail::encode(buf, 42, std::string{"answer"});
//   auto [n, s] = tandem::mp::detail::decode<int, std::string>(buf);
//
// Thread-safety: encode and decode are pure functions of their arguments; call them from any
// thread.
#pragma once

#include <tandem/error.hpp>

#include <caf/deserializer.hpp>
#include <caf/serializer.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace tandem::mp::detail {

/// The format version written as the first byte of every message.
inline constexpr std::uint8_t codec_version = 1;

/// Bytes before the first value: the version and the type tag.
inline constexpr std::size_t message_header_size = 9;

/// The most stack that decoding nested sequences may use before the message is refused.
inline constexpr std::size_t max_decode_stack = std::size_t{512} << 10;

/// 64-bit FNV-1a of `s`, continuing from `h`.
constexpr std::uint64_t fnv1a(std::uint64_t h, std::string_view s) noexcept {
  for (char c : s) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// The type tag of a message holding values of the types Ts..., in this order.
template <class... Ts>
std::uint64_t type_tag() {
  static const std::uint64_t tag = [] {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    ((h = fnv1a(fnv1a(h, typeid(Ts).name()), ";")), ...);
    return h;
  }();
  return tag;
}

/// The demangled names of `types`, separated by ", ", for error messages.
std::string type_names(std::span<const std::type_info* const> types);

/// The demangled names of Ts..., separated by ", ".
template <class... Ts>
std::string type_names() {
  const std::type_info* types[] = {&typeid(Ts)...};
  return type_names(types);
}

/// The type tag of the encoded message `in`, or nothing when `in` is too short or has another
/// version. Never throws.
std::optional<std::uint64_t> message_tag(std::span<const std::byte> in) noexcept;

// -- the serializer ---------------------------------------------------------------------------

/// Appends values to a byte vector in the format of the file comment. Used by encode(); a value
/// that fails leaves the bytes written so far in the vector (encode removes them).
class codec_writer final : public caf::serializer {
public:
  explicit codec_writer(std::vector<std::byte>& out);
  ~codec_writer() override;

  caf::error begin_object(std::uint16_t& nr, std::string& name) override;
  caf::error end_object() override;
  caf::error begin_sequence(std::size_t& num) override;
  caf::error end_sequence() override;
  caf::error apply_raw(std::size_t num_bytes, void* data) override;

  /// Writes the version and `tag`.
  void write_header(std::uint64_t tag);
  void write_varint(std::uint64_t x);
  void write_bytes(const void* data, std::size_t n);

protected:
  caf::error apply_impl(std::int8_t& x) override;
  caf::error apply_impl(std::uint8_t& x) override;
  caf::error apply_impl(std::int16_t& x) override;
  caf::error apply_impl(std::uint16_t& x) override;
  caf::error apply_impl(std::int32_t& x) override;
  caf::error apply_impl(std::uint32_t& x) override;
  caf::error apply_impl(std::int64_t& x) override;
  caf::error apply_impl(std::uint64_t& x) override;
  caf::error apply_impl(float& x) override;
  caf::error apply_impl(double& x) override;
  caf::error apply_impl(long double& x) override;
  caf::error apply_impl(std::string& x) override;
  caf::error apply_impl(std::u16string& x) override;
  caf::error apply_impl(std::u32string& x) override;

private:
  template <class T>
  void write_fixed(T x);

  std::vector<std::byte>& out_;
};

// -- the deserializer -------------------------------------------------------------------------

/// Reads values from untrusted bytes in the format of the file comment. Every failure throws
/// bad_message_error at once (the virtual members never return an error), so a partly decoded
/// value is simply destroyed.
class codec_reader final : public caf::deserializer {
public:
  explicit codec_reader(std::span<const std::byte> in);
  ~codec_reader() override;

  caf::error begin_object(std::uint16_t& nr, std::string& name) override;
  caf::error end_object() override;
  caf::error begin_sequence(std::size_t& num) override;
  caf::error end_sequence() override;
  caf::error apply_raw(std::size_t num_bytes, void* data) override;

  /// Reads the version and the tag; throws bad_message_error naming `expected_names` when the
  /// tag is not `expected`.
  void read_header(std::uint64_t expected, std::string (*expected_names)());

  /// Reads a sequence length and checks that `length * min_element_size` bytes are left.
  std::size_t read_length(std::size_t min_element_size, const char* what);

  /// Copies `n` bytes out; throws when fewer are left.
  void read_bytes(void* data, std::size_t n, const char* what);

  /// Throws unless every byte was consumed.
  void finish() const;

  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }

  /// Throws bad_message_error with `what`.
  [[noreturn]] static void fail(const std::string& what);

protected:
  caf::error apply_impl(std::int8_t& x) override;
  caf::error apply_impl(std::uint8_t& x) override;
  caf::error apply_impl(std::int16_t& x) override;
  caf::error apply_impl(std::uint16_t& x) override;
  caf::error apply_impl(std::int32_t& x) override;
  caf::error apply_impl(std::uint32_t& x) override;
  caf::error apply_impl(std::int64_t& x) override;
  caf::error apply_impl(std::uint64_t& x) override;
  caf::error apply_impl(float& x) override;
  caf::error apply_impl(double& x) override;
  caf::error apply_impl(long double& x) override;
  caf::error apply_impl(std::string& x) override;
  caf::error apply_impl(std::u16string& x) override;
  caf::error apply_impl(std::u32string& x) override;

private:
  template <class T>
  T read_fixed(const char* what);
  std::uint64_t read_varint(const char* what);
  void check_stack() const;
  [[noreturn]] void fail_length(std::uint64_t n, const char* what) const;
  void check_no_pending() const;

  const std::byte* pos_;
  const std::byte* end_;
  std::uintptr_t stack_base_;
  // A sequence length above the bytes left, accepted only as the bit count of a
  // std::vector<bool>: the next call must read its bytes. Zero when none.
  std::uint64_t pending_bits_ = 0;
};

/// Throws value_error for a value of type `type` that `err` says cannot be encoded.
[[noreturn]] void throw_encode_error(const caf::error& err, const std::type_info& type);

/// Throws bad_message_error for a value of type `type` whose inspect overload reported `err`.
[[noreturn]] void throw_decode_error(const caf::error& err, const std::type_info& type);

// -- values -----------------------------------------------------------------------------------

/// True for the std::vector types whose elements are copied as one block on little-endian
/// machines: the bytes are the same as element by element.
template <class T>
inline constexpr bool is_block_vector = false;

template <class U, class A>
inline constexpr bool is_block_vector<std::vector<U, A>> =
    std::endian::native == std::endian::little && !std::is_same_v<U, bool> &&
    (std::is_integral_v<U> || std::is_same_v<U, float> || std::is_same_v<U, double>)&&(
        sizeof(U) == 1 || sizeof(U) == 2 || sizeof(U) == 4 || sizeof(U) == 8);

static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "the codec's float format is IEEE 754");

template <class T>
void encode_value(codec_writer& w, const T& x) {
  static_assert(caf::detail::is_serializable<T>::value,
                "tandem: a message value needs a CAF inspect overload (numbers, strings, std "
                "containers and user structs with inspect are supported)");
  if constexpr (is_block_vector<T>) {
    w.write_varint(x.size());
    if (!x.empty()) w.write_bytes(x.data(), x.size() * sizeof(typename T::value_type));
  } else {
    // CAF's serializer interface takes mutable references but never modifies a value it saves.
    if (auto err = w.apply(const_cast<T&>(x))) throw_encode_error(err, typeid(T));
  }
}

template <class T>
void decode_value(codec_reader& r, T& x) {
  if constexpr (is_block_vector<T>) {
    using U = typename T::value_type;
    auto n = r.read_length(sizeof(U), "vector");
    x.resize(n);
    if (n != 0) r.read_bytes(x.data(), n * sizeof(U), "vector");
  } else {
    if (auto err = r.apply(x)) throw_decode_error(err, typeid(T));
  }
}

// -- messages ---------------------------------------------------------------------------------

/// Appends one message holding `xs...` to `out`. Throws value_error when a value cannot be
/// encoded (its inspect overload reported an error); `out` is then left as it was. Other
/// exceptions (std::bad_alloc) leave `out` as it was too.
template <class... Ts>
void encode(std::vector<std::byte>& out, const Ts&... xs) {
  static_assert(sizeof...(Ts) > 0, "a message holds at least one value");
  const auto mark = out.size();
  try {
    codec_writer w{out};
    w.write_header(type_tag<Ts...>());
    (encode_value(w, xs), ...);
  } catch (...) {
    out.resize(mark);
    throw;
  }
}

/// Decodes a message that encode() made from values of the types Ts... (each default
/// constructible). Throws bad_message_error when `in` is truncated, corrupt, longer than the
/// values, or holds other types; allocates at most a constant factor over `in.size()`.
template <class... Ts>
std::tuple<Ts...> decode(std::span<const std::byte> in) {
  static_assert(sizeof...(Ts) > 0, "a message holds at least one value");
  static_assert((std::is_default_constructible_v<Ts> && ...),
                "decoded types must be default constructible");
  codec_reader r{in};
  r.read_header(type_tag<Ts...>(), &type_names<Ts...>);
  std::tuple<Ts...> result;
  std::apply([&r](auto&... xs) { (decode_value(r, xs), ...); }, result);
  r.finish();
  return result;
}

} // namespace tandem::mp::detail
