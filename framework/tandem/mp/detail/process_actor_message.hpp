// The messages of a process's mailbox (tandem/mp/process_mailbox.hpp): how a list of values
// becomes one codec message and back, and the hooks between tandem::mp::process (the parent's
// end) and the child's end.
//
// The rule: a message is a list of values. send(a, b) encodes one codec message of the values
// (a, b) (tag of the types A, B); a single std::tuple argument stands for its elements, so
// send(std::tuple{a, b}) sends the same message. recv<std::tuple<A, B>>() receives a message of
// the values (A, B) and recv<A>() a message of the one value A (recv<std::tuple<A>>() too, as a
// tuple). String literals, `const char*` and std::string_view travel as std::string.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/detail/codec.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace tandem::mp::detail {

/// True for std::tuple types.
template <class T>
inline constexpr bool is_std_tuple = false;

template <class... Ts>
inline constexpr bool is_std_tuple<std::tuple<Ts...>> = true;

/// The type a value travels as: std::string for string-like values, T otherwise.
template <class T>
using wire_type_t = std::conditional_t<std::is_convertible_v<const T&, std::string_view> &&
                                           !std::is_same_v<std::decay_t<T>, std::string>,
                                       std::string, std::decay_t<T>>;

/// `x` as its wire type (a reference when that is its own type).
template <class T>
decltype(auto) as_wire(const T& x) {
  if constexpr (std::is_same_v<wire_type_t<T>, std::decay_t<T>>)
    return (x);
  else
    return std::string{std::string_view{x}};
}

/// Appends the message of the values `xs...` (see the file comment) to `out`. Throws value_error
/// as encode().
template <class... Ts>
void encode_message(std::vector<std::byte>& out, const Ts&... xs) {
  static_assert(sizeof...(Ts) > 0, "a message holds at least one value");
  if constexpr (sizeof...(Ts) == 1 && (is_std_tuple<std::decay_t<Ts>> && ...)) {
    static_assert(((std::tuple_size_v<std::decay_t<Ts>> > 0) && ...),
                  "a message holds at least one value");
    std::apply([&out](const auto&... ys) { encode(out, as_wire(ys)...); }, xs...);
  } else {
    encode(out, as_wire(xs)...);
  }
}

/// The codec's view of a receive type: its values as a std::tuple.
template <class T>
struct message_types {
  using tuple = std::tuple<T>;
  static std::uint64_t tag() { return type_tag<T>(); }
  static tuple decode_tuple(std::span<const std::byte> in) { return decode<T>(in); }
};

template <class... Ts>
struct message_types<std::tuple<Ts...>> {
  static_assert(sizeof...(Ts) > 0, "a message holds at least one value");
  using tuple = std::tuple<Ts...>;
  static std::uint64_t tag() { return type_tag<Ts...>(); }
  static tuple decode_tuple(std::span<const std::byte> in) { return decode<Ts...>(in); }
};

/// Decodes a message as T (see the file comment). Throws bad_message_error as decode().
template <class T>
T decode_message(std::span<const std::byte> in) {
  if constexpr (is_std_tuple<T>)
    return message_types<T>::decode_tuple(in);
  else
    return std::get<0>(decode<T>(in));
}

// -- the two channels of a child's mailbox --------------------------------------------------------

/// A child's ends of its mailbox: `box` carries plain messages (p.send, mp::send, replies to
/// them), `requests` the messages of the process's actor, each preceded by an 8-byte request
/// number (0: no answer wanted), and the answers, preceded by the number they answer.
struct child_channels {
  connection box;
  connection requests;
};

/// Installs the child's ends at the start of a process target (process.cpp). Replaces (and
/// closes) ends inherited from a forking parent.
void set_parent_mailbox(child_channels channels) noexcept;

/// Size of the request number before an actor message.
inline constexpr std::size_t request_id_size = 8;

/// Appends `id` (little-endian) to `out`.
inline void put_request_id(std::vector<std::byte>& out, std::uint64_t id) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((id >> (8 * i)) & 0xff));
}

/// Reads the request number at the front of `in`. Throws bad_message_error when it is shorter.
inline std::uint64_t get_request_id(std::span<const std::byte> in) {
  if (in.size() < request_id_size)
    throw bad_message_error{"an actor message of " + std::to_string(in.size()) +
                            " bytes is shorter than its request number: the peer is not a tandem "
                            "process of this program"};
  std::uint64_t id = 0;
  for (int i = 0; i < 8; ++i) id |= std::to_integer<std::uint64_t>(in[i]) << (8 * i);
  return id;
}

} // namespace tandem::mp::detail
