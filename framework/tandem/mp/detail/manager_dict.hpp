// tandem::mp::dict<K, V>: Python's dict, living in a tandem::mp::manager's shared memory, found
// or created by name (`m.dict<std::string, std::int64_t>("scores")`) and used by every process
// that attached the manager.
//
//   auto m = tandem::mp::manager::create("jobs");          // one process creates...
//   auto scores = m.dict<std::string, std::int64_t>("scores");
//   scores.set("ada", 3);
//
//   auto m2 = tandem::mp::manager::attach("jobs");          // ...any other attaches by name
//   auto s2 = m2.dict<std::string, std::int64_t>("scores");
//   std::int64_t n = s2.get("ada");                         // 3
//   s2.get("bob", 0);                                       // 0: the default
//   for (auto& [k, v] : s2.items()) { ... }                 // a consistent snapshot
//
// Keys and values are stored as bytes (see <tandem/mp/detail/manager_codec.hpp>): strings,
// numbers, trivially copyable structs, and with tandem::framework any type with a CAF `inspect`
// overload. Two keys are the same key when their stored bytes are equal. Iteration order is
// insertion order, as Python's: setting an existing key keeps its place, a key erased and set
// again goes last.
//
// Atomicity: every member is one atomic operation on the shared dict (it holds the dict's
// process-shared mutex throughout); keys(), values() and items() return a consistent snapshot.
// update() is atomic too, also against a crash; only running out of space in the middle of it
// leaves the pairs before the one that did not fit set, as Python's update would.
//
// Process death: a process killed at any instruction of any member leaves the dict as it was
// before that call or as it is after it, never torn, and never locked: the next call, in any
// process, finds the dead writer (the kernel releases its robust mutex), repairs the dict (rolls
// the dead call back, or forward once it was published; an update() that had begun is finished),
// and then throws owner_died_error *without doing its own work*: the caller sees the repaired
// dict and simply calls again. Exactly one call is told about each death; repairs() counts them.
//
// Errors (Python's in brackets): a missing key in get(key), erase, pop(key) [KeyError] and
// popitem on an empty dict throw key_error (a value_error) naming the key; segment_error (ENOSPC)
// when the manager's segment is full (the dict is then unchanged); value_error when a key or value
// cannot be serialized or is larger than 4 GiB; bad_message_error when stored bytes do not decode
// as the requested type (damaged memory; type mismatches are refused earlier, by the manager).
//
// Thread- and process-safety: every member may be called concurrently from any thread of any
// process. A handle is a cheap reference: copies refer to the same dict, and the mapping stays
// alive while any handle of this process (or its manager) exists.
//
// Performance: each call takes one robust mutex, copies the key (and value) once, and for a
// store takes the allocator's mutex once or twice; no system call unless the segment must grow.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/manager_codec.hpp>
#include <tandem/mp/detail/manager_core.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

namespace tandem::mp {

class manager;

/// Python's dict in a manager's shared memory. See the file comment.
template <class K, class V>
class dict {
  static_assert(std::is_object_v<K> && !std::is_const_v<K> && std::is_object_v<V> &&
                    !std::is_const_v<V>,
                "a dict holds non-const objects");

  using key_bytes = detail::manager_encoded<K, true>;
  using value_bytes = detail::manager_encoded<V, false>;

public:
  using key_type = K;
  using mapped_type = V;
  using value_type = std::pair<K, V>;
  using size_type = std::size_t;

  // -- construction ---------------------------------------------------------------------------

  /// An empty handle: every member but operator bool is undefined on it. Get real ones from
  /// mp::manager::dict<K, V>(name).
  dict() noexcept = default;

  // -- lookups --------------------------------------------------------------------------------

  /// Python's `d[key]`: the value of `key`. Throws key_error (Python's KeyError; a value_error)
  /// when `key` is missing.
  V get(const K& key) const {
    if (auto v = find(key)) return std::move(*v);
    throw_missing(key);
  }

  /// Python's `d.get(key, default_value)`: the value of `key`, or `default_value`.
  V get(const K& key, const V& default_value) const {
    if (auto v = find(key)) return std::move(*v);
    return default_value;
  }

  /// The value of `key`, or std::nullopt (Python's `d.get(key)`, whose default is None).
  std::optional<V> find(const K& key) const {
    key_bytes k{key};
    std::optional<V> out;
    map_.get(k.bytes(), &store_value, &out);
    return out;
  }

  /// Python's `key in d`.
  bool contains(const K& key) const {
    key_bytes k{key};
    return map_.contains(k.bytes());
  }

  /// Python's `len(d)`.
  size_type size() const { return map_.size(); }
  bool empty() const { return size() == 0; }

  // -- snapshots ------------------------------------------------------------------------------

  /// Python's `list(d.keys())`: every key, in insertion order, taken in one atomic step.
  std::vector<K> keys() const {
    std::vector<K> out;
    map_.items(
        [](void* ctx, detail::manager_bytes k, detail::manager_bytes) {
          static_cast<std::vector<K>*>(ctx)->push_back(detail::manager_decode<K, true>(k));
        },
        &out);
    return out;
  }

  /// Python's `list(d.values())`, in insertion order, taken in one atomic step.
  std::vector<V> values() const {
    std::vector<V> out;
    map_.items(
        [](void* ctx, detail::manager_bytes, detail::manager_bytes v) {
          static_cast<std::vector<V>*>(ctx)->push_back(detail::manager_decode<V, false>(v));
        },
        &out);
    return out;
  }

  /// Python's `list(d.items())`, in insertion order, taken in one atomic step.
  std::vector<value_type> items() const {
    std::vector<value_type> out;
    map_.items(
        [](void* ctx, detail::manager_bytes k, detail::manager_bytes v) {
          static_cast<std::vector<value_type>*>(ctx)->emplace_back(
              detail::manager_decode<K, true>(k), detail::manager_decode<V, false>(v));
        },
        &out);
    return out;
  }

  // -- changes --------------------------------------------------------------------------------

  /// Python's `d[key] = value`. A new key goes last in the order; an existing one keeps its
  /// place.
  void set(const K& key, const V& value) {
    key_bytes k{key};
    value_bytes v{value};
    map_.set(k.bytes(), v.bytes());
  }

  /// Python's `d.update(pairs)`: sets each pair in order (a later duplicate wins), as one atomic
  /// operation. Every key and value is serialized before the dict is touched, so one that
  /// cannot be changes nothing.
  template <std::ranges::input_range R>
  void update(const R& pairs) {
    std::vector<std::unique_ptr<key_bytes>> ks;
    std::vector<std::unique_ptr<value_bytes>> vs;
    std::vector<std::pair<detail::manager_bytes, detail::manager_bytes>> raw;
    for (const auto& [key, value] : pairs) {
      ks.push_back(std::make_unique<key_bytes>(key));
      vs.push_back(std::make_unique<value_bytes>(value));
      raw.emplace_back(ks.back()->bytes(), vs.back()->bytes());
    }
    map_.update(raw);
  }

  void update(std::initializer_list<value_type> pairs) { update(std::vector<value_type>(pairs)); }

  /// Python's `del d[key]`. Throws key_error (KeyError) when `key` is missing.
  void erase(const K& key) {
    key_bytes k{key};
    if (!map_.erase(k.bytes())) throw_missing(key);
  }

  /// Python's `d.pop(key)`: removes `key` and returns its value. Throws key_error (KeyError)
  /// when `key` is missing.
  V pop(const K& key) {
    if (auto v = pop_optional(key)) return std::move(*v);
    throw_missing(key);
  }

  /// Python's `d.pop(key, default_value)`: as pop(key), but returns `default_value` for a
  /// missing key.
  V pop(const K& key, const V& default_value) {
    if (auto v = pop_optional(key)) return std::move(*v);
    return default_value;
  }

  /// Python's `d.popitem()`: removes and returns the last inserted item. Throws value_error
  /// (key_error, Python's KeyError) when the dict is empty.
  value_type popitem() {
    std::optional<value_type> out;
    if (!map_.popitem(
            [](void* ctx, detail::manager_bytes k, detail::manager_bytes v) {
              static_cast<std::optional<value_type>*>(ctx)->emplace(
                  detail::manager_decode<K, true>(k), detail::manager_decode<V, false>(v));
            },
            &out))
      throw key_error("popitem(): the dict is empty");
    return std::move(*out);
  }

  /// Python's `d.setdefault(key, default_value)`: the value of `key`; when it is missing, first
  /// sets it to `default_value`.
  V setdefault(const K& key, const V& default_value) {
    key_bytes k{key};
    value_bytes v{default_value};
    std::optional<V> out;
    map_.setdefault(k.bytes(), v.bytes(), &store_value, &out);
    return std::move(*out);
  }

  /// Python's `d.setdefault(key)` with V's default value in place of None.
  V setdefault(const K& key) { return setdefault(key, V{}); }

  /// Python's `d.clear()`: one store empties the dict; its memory is then freed.
  void clear() { map_.clear(); }

  // -- observers ------------------------------------------------------------------------------

  /// The name it has in its manager.
  const std::string& name() const noexcept { return name_; }

  /// How many times a process died while changing this dict (each death repaired once).
  std::uint64_t repairs() const { return map_.repairs(); }

  explicit operator bool() const noexcept { return static_cast<bool>(map_); }

private:
  friend class manager;

  dict(detail::manager_map map, std::string name) : map_(std::move(map)), name_(std::move(name)) {}

  static void store_value(void* ctx, detail::manager_bytes v) {
    static_cast<std::optional<V>*>(ctx)->emplace(detail::manager_decode<V, false>(v));
  }

  std::optional<V> pop_optional(const K& key) {
    key_bytes k{key};
    std::optional<V> out;
    map_.erase(k.bytes(), &store_value, &out);
    return out;
  }

  [[noreturn]] void throw_missing(const K& key) const {
    throw key_error("key " + detail::manager_key_repr(key) + " is not in dict \"" + name_ +
                    "\" (Python's KeyError); check contains(key), or use get(key, default)");
  }

  detail::manager_map map_;
  std::string name_;
};

} // namespace tandem::mp
