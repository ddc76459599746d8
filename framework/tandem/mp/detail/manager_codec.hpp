// How the typed containers of tandem::mp::manager store keys, values and elements as bytes.
//
//   std::string                       its characters
//   float, double                     their bytes, with -0.0 stored as 0.0 (equal keys are equal
//                                     bytes; a NaN key equals only a NaN of the same bits)
//   other trivially copyable types    their bytes; as a key, only types whose equal values have
//                                     equal bytes (std::has_unique_object_representations:
//                                     integers, enums, structs without padding)
//   anything else with a CAF inspect  serialized with tandem::mp::detail::encode (needs
//   overload                          tandem::framework); equal keys must serialize alike
//
// Every container also carries a type tag (a hash of the kind and of the element types' names)
// that is checked when a process asks for an object by name, so a process that asks with other
// types gets value_error rather than misread bytes.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/manager_core.hpp>

#if __has_include(<caf/serializer.hpp>) && __has_include(<tandem/mp/detail/codec.hpp>)
#include <tandem/mp/detail/codec.hpp>
#define TANDEM_MP_MANAGER_HAS_CODEC 1
#else
#define TANDEM_MP_MANAGER_HAS_CODEC 0
#endif

#include <cxxabi.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <vector>

namespace tandem::mp::detail {

/// How T is stored: 1 characters, 2 normalized floating point, 3 bytes, 4 serialized.
template <class T, bool AsKey>
constexpr int manager_repr() {
  if constexpr (std::is_same_v<T, std::string>)
    return 1;
  else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
    return 2;
  else if constexpr (std::is_trivially_copyable_v<T> &&
                     (!AsKey || std::has_unique_object_representations_v<T>))
    return 3;
  else
    return 4;
}

/// True when T can be stored (as a key when AsKey) in this build.
template <class T, bool AsKey>
inline constexpr bool
    manager_storable = manager_repr<T, AsKey>() != 4 || TANDEM_MP_MANAGER_HAS_CODEC != 0;

/// The bytes of one key or value, owned or viewed.
template <class T, bool AsKey>
class manager_encoded {
  static_assert(manager_storable<T, AsKey>,
                "without tandem::framework (CAF), a manager stores only std::string and trivially "
                "copyable types (as keys: types whose equal values have equal bytes)");

public:
  explicit manager_encoded(const T& x) {
    constexpr int repr = manager_repr<T, AsKey>();
    if constexpr (repr == 1) {
      bytes_ = {reinterpret_cast<const std::byte*>(x.data()), x.size()};
    } else if constexpr (repr == 2) {
      T v = x == T{0} ? T{0} : x; // -0.0 becomes 0.0
      buf_.resize(sizeof(T));
      std::memcpy(buf_.data(), &v, sizeof(T));
      bytes_ = buf_;
    } else if constexpr (repr == 3) {
      bytes_ = {reinterpret_cast<const std::byte*>(std::addressof(x)), sizeof(T)};
    } else {
#if TANDEM_MP_MANAGER_HAS_CODEC
      encode(buf_, x);
      bytes_ = buf_;
#endif
    }
  }
  manager_encoded(const manager_encoded&) = delete;
  manager_encoded& operator=(const manager_encoded&) = delete;

  manager_bytes bytes() const noexcept {
    return bytes_;
  }

private:
  std::vector<std::byte> buf_;
  manager_bytes bytes_;
};

[[noreturn, gnu::cold]] inline void manager_throw_size(std::size_t got, std::size_t expected) {
  throw bad_message_error("a manager container holds an item of " + std::to_string(got) +
                          " bytes where " + std::to_string(expected) +
                          " were expected: its memory was damaged");
}

/// Decodes bytes stored by manager_encoded<T, ...>.
template <class T, bool AsKey>
T manager_decode(manager_bytes b) {
  constexpr int repr = manager_repr<T, AsKey>();
  if constexpr (repr == 1) {
    return std::string{reinterpret_cast<const char*>(b.data()), b.size()};
  } else if constexpr (repr == 2 || repr == 3) {
    if (b.size() != sizeof(T)) manager_throw_size(b.size(), sizeof(T));
    // Trivially copyable, not necessarily default constructible: build in raw storage.
    alignas(T) unsigned char raw[sizeof(T)];
    std::memcpy(raw, b.data(), sizeof(T));
    return *std::launder(reinterpret_cast<T*>(raw));
  } else {
#if TANDEM_MP_MANAGER_HAS_CODEC
    return std::get<0>(decode<T>(b));
#else
    static_assert(manager_storable<T, AsKey>, "this type needs tandem::framework (CAF)");
#endif
  }
}

/// The readable name of T (demangled).
template <class T>
std::string manager_type_name() {
  const char* mangled = typeid(T).name();
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string out = status == 0 && d != nullptr ? d : mangled;
  std::free(d);
  if (out == "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >")
    out = "std::string";
  return out;
}

/// FNV-1a of the kind and the element types' mangled names: the same in every process built
/// with the same ABI.
inline std::uint64_t manager_type_tag(manager_kind kind,
                                      std::initializer_list<const std::type_info*> types) {
  std::uint64_t h = 0xcbf2'9ce4'8422'2325ull ^ static_cast<std::uint64_t>(kind);
  for (const auto* t : types) {
    for (const char* p = t->name(); *p != '\0'; ++p)
      h = (h ^ static_cast<unsigned char>(*p)) * 0x100'0000'01b3ull;
    h = (h ^ ';') * 0x100'0000'01b3ull;
  }
  return h;
}

/// A printable form of a key for error messages (strings and numbers; other types are named).
template <class T>
std::string manager_key_repr(const T& key) {
  if constexpr (std::is_same_v<T, std::string>) {
    std::string out = "'";
    out += key.size() > 64 ? key.substr(0, 64) + "..." : key;
    out += "'";
    return out;
  } else if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return std::to_string(key);
  } else {
    return "the key of type " + manager_type_name<T>();
  }
}

} // namespace tandem::mp::detail
