// tandem::detail::frame: how a pipe message is delimited on its byte stream.
//
// A frame is a header followed by the message bytes. The header is Python's multiprocessing
// framing, so a tandem connection and a Python Connection read each other's byte messages:
//   - a 4-byte big-endian signed length n, 0 <= n <= 0x7fffffff, when the message is shorter than
//     2^31 bytes;
//   - otherwise the 4 bytes 0xffffffff (-1) followed by an 8-byte big-endian unsigned length.
// Every other negative 4-byte length is reserved and refused.
//
// Decoding checks the length against a cap (default 1 GiB) before anything is allocated, so
// random bytes or a hostile peer cannot make the receiver allocate more than the cap.
#pragma once

#include <tandem/error.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace tandem::detail::frame {

/// The default largest message a receiver accepts: 1 GiB.
inline constexpr std::size_t default_max_length = std::size_t{1} << 30;

/// Size of the short header (4 bytes) and of the extension that follows a -1 (8 bytes).
inline constexpr std::size_t short_header_size = 4;
inline constexpr std::size_t extended_header_size = 8;
inline constexpr std::size_t max_header_size = short_header_size + extended_header_size;

/// The longest message with a short header; longer ones use the extended header.
inline constexpr std::uint64_t max_short_length = 0x7fffffffU;

using header_buffer = std::array<std::byte, max_header_size>;

/// Writes the header of a message of `length` bytes into `out`; returns how many bytes it used.
inline std::size_t encode_header(std::uint64_t length, header_buffer& out) noexcept {
  if (length <= max_short_length) {
    for (std::size_t i = 0; i < short_header_size; ++i)
      out[i] = static_cast<std::byte>((length >> (8 * (short_header_size - 1 - i))) & 0xffU);
    return short_header_size;
  }
  for (std::size_t i = 0; i < short_header_size; ++i) out[i] = std::byte{0xff};
  for (std::size_t i = 0; i < extended_header_size; ++i)
    out[short_header_size + i] =
        static_cast<std::byte>((length >> (8 * (extended_header_size - 1 - i))) & 0xffU);
  return max_header_size;
}

/// The outcome of decoding a short header: either a length, or "an 8-byte extension follows".
/// The short header of a tandem-only marker frame (-2 as a signed length): the message lies in
/// shared memory, and a descriptor of `shared_descriptor_size` bytes follows (area id, first
/// chunk, reserved, length; native byte order: both ends are on one machine). Only connections
/// made by mp::pipe() send or accept it.
inline constexpr std::uint32_t shared_marker = 0xfffffffeU;
inline constexpr std::size_t shared_descriptor_size = 24;

struct short_header {
  bool extended = false;
  bool shared = false;
  std::uint64_t length = 0;
};

/// Decodes the 4-byte header. Throws bad_message_error for a reserved negative length and for a
/// length above `max_length`.
inline short_header decode_short(std::span<const std::byte, short_header_size> in,
                                 std::size_t max_length) {
  std::uint32_t raw = 0;
  for (auto b : in) raw = (raw << 8) | std::to_integer<std::uint32_t>(b);
  if (raw == 0xffffffffU) return {true, false, 0};
  if (raw == shared_marker) return {false, true, 0};
  if (raw > max_short_length)
    throw bad_message_error("pipe message header has a reserved negative length: the stream is "
                            "corrupt or was not written by a tandem or Python connection");
  if (raw > max_length)
    throw bad_message_error("pipe message of " + std::to_string(raw) +
                            " bytes exceeds the limit of " + std::to_string(max_length) +
                            " bytes: raise the connection's max_message_size if it is expected");
  return {false, false, raw};
}

/// Decodes the 8-byte extension. Throws bad_message_error for a length above `max_length`, or one
/// that should have used the short header.
inline std::uint64_t decode_extended(std::span<const std::byte, extended_header_size> in,
                                     std::size_t max_length) {
  std::uint64_t raw = 0;
  for (auto b : in) raw = (raw << 8) | std::to_integer<std::uint64_t>(b);
  if (raw > max_length)
    throw bad_message_error("pipe message of " + std::to_string(raw) +
                            " bytes exceeds the limit of " + std::to_string(max_length) +
                            " bytes: raise the connection's max_message_size if it is expected");
  return raw;
}

} // namespace tandem::detail::frame
