// tandem::mp::detail::process_arg: how one argument of a process target travels to a child
// started with the spawn method (a new program image, so nothing is shared but bytes and
// descriptors).
//
// For each argument, the parent calls process_arg<T>::save(writer, x) at start(); the child calls
// process_arg<T>::load(reader) with exactly the bytes that save appended and the descriptors it
// registered, then calls the target. The fork method needs none of this: the child runs on a copy
// of the parent's memory and descriptors.
//
// The default saves a value with the codec (tandem/mp/detail/codec.hpp: any type with a CAF
// `inspect` overload). Types that own descriptors specialize the trait:
//
//   template <>
//   struct process_arg<my_handle> {
//     static void save(arg_writer& w, const my_handle& h) {
//       auto index = w.add_fd(h.fd());            // the child gets its own copy of the descriptor
//       append(w.bytes, index);                   // and finds it again by index
//     }
//     static my_handle load(arg_reader& r) {
//       return my_handle{r.fd(read_index(r.bytes))}; // the child owns r.fd(i) from now on
//     }
//   };
//
// save() must not close or take the descriptors it registers: the parent still owns them until
// start() has returned (and then destroys its copy of the arguments). load() takes ownership of
// the descriptors it asks for with fd().
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/connection.hpp>

#if __has_include(<tandem/mp/detail/codec.hpp>) && __has_include(<caf/serializer.hpp>)
#include <tandem/mp/detail/codec.hpp>
#define TANDEM_MP_PROCESS_ARG_CODEC 1
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace tandem::mp::detail {

/// Where save() puts one argument: its bytes, and the descriptors the child needs.
struct arg_writer {
  /// This argument's bytes; save() appends to it.
  std::vector<std::byte>& bytes;
  /// The descriptors of every argument of the call, in registration order.
  std::vector<int>& fds;

  /// Registers `fd` (still owned by the caller) to be duplicated into the child; returns the
  /// index under which arg_reader::fd() finds the child's copy.
  std::size_t add_fd(int fd) {
    fds.push_back(fd);
    return fds.size() - 1;
  }
};

/// What load() gets back: exactly the bytes save() appended, and the child's descriptors.
struct arg_reader {
  /// This argument's bytes.
  std::span<const std::byte> bytes;
  /// The child's descriptors, by the index add_fd() returned.
  std::span<const int> fds;

  /// The child's copy of the descriptor registered under `index`; the caller owns it from now on
  /// (see the file comment). Throws bad_message_error for an index that was never registered.
  int fd(std::size_t index) const {
    if (index >= fds.size())
      throw bad_message_error{"process argument refers to descriptor #" + std::to_string(index) +
                              " but only " + std::to_string(fds.size()) +
                              " were passed: the argument's save and load disagree"};
    return fds[index];
  }
};

/// How an argument of type T reaches a spawn child; see the file comment. The default uses the
/// codec.
template <class T, class = void>
struct process_arg {
#ifdef TANDEM_MP_PROCESS_ARG_CODEC
  static void save(arg_writer& w, const T& x) {
    encode<T>(w.bytes, x);
  }
  static T load(arg_reader& r) {
    return std::get<0>(decode<T>(r.bytes));
  }
#else
  // Without the codec (tandem::primitives builds without CAF) only trivially copyable values
  // travel, as their bytes.
  static_assert(std::is_trivially_copyable_v<T>,
                "this argument type needs the codec (tandem::framework) or a process_arg "
                "specialization");
  static void save(arg_writer& w, const T& x) {
    auto old = w.bytes.size();
    w.bytes.resize(old + sizeof(T));
    std::memcpy(w.bytes.data() + old, &x, sizeof(T));
  }
  static T load(arg_reader& r) {
    if (r.bytes.size() != sizeof(T))
      throw bad_message_error{"process argument has " + std::to_string(r.bytes.size()) +
                              " bytes, expected " + std::to_string(sizeof(T))};
    T x;
    std::memcpy(&x, r.bytes.data(), sizeof(T));
    return x;
  }
#endif
};

/// A connection travels as its descriptor (the child gets its own copy), its directions, and
/// whether it takes shared-memory transfers (every marker carries its memory, so nothing else).
template <>
struct process_arg<connection> {
  static void save(arg_writer& w, const connection& c) {
    auto index = static_cast<std::uint32_t>(w.add_fd(c.fileno()));
    auto old = w.bytes.size();
    w.bytes.resize(old + sizeof index);
    std::memcpy(w.bytes.data() + old, &index, sizeof index);
    w.bytes.push_back(std::byte{c.readable()});
    w.bytes.push_back(std::byte{c.writable()});
    w.bytes.push_back(std::byte{c.shared_memory_transfers()});
  }
  static connection load(arg_reader& r) {
    std::uint32_t index = 0;
    if (r.bytes.size() != sizeof index + 3)
      throw bad_message_error{"a connection argument has " + std::to_string(r.bytes.size()) +
                              " bytes, expected " + std::to_string(sizeof index + 3)};
    std::memcpy(&index, r.bytes.data(), sizeof index);
    connection c{r.fd(index), r.bytes[sizeof index] != std::byte{0},
                 r.bytes[sizeof index + 1] != std::byte{0}};
    if (r.bytes[sizeof index + 2] != std::byte{0}) c.set_shared_memory_transfers(true);
    return c;
  }
};

} // namespace tandem::mp::detail
