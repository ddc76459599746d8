// tandem::mp::array<T> and mp::raw_array<T>: Python's multiprocessing.Array and RawArray, a
// fixed number of trivially copyable Ts in shared memory that every process holding a handle
// reads and writes.
//
//   auto samples = tandem::mp::array<double>::create(1 << 20);   // zero-filled, own rlock
//   tandem::mp::process p{fill, samples};                         // any start method
//   ...
//   void fill(tandem::mp::array<double> a) {
//     std::scoped_lock guard{a.get_lock()};
//     for (auto& x : a.span()) x = 1.0;                          // no copy: the shared Ts
//   }
//   double first = samples.get(0), last = samples.get(-1);        // negative: from the end
//   std::vector<double> part = samples.slice(10, 20);            // Python's a[10:20]
//
// An array is a handle: copies (and a handle passed to a child process) refer to the same Ts.
// They live in an anonymous shared-memory file of their own (a memfd: nothing in /dev/shm, and
// the memory goes when the last process mapping it closes it), zero-filled at creation. A spawn
// child receives the file's descriptor; a fork child inherits the mapping.
//
// Indexing and slicing follow Python: get(i), set(i, x) accept -size() <= i < size() (negative
// counts from the end) and throw index_error (Python's IndexError, a value_error) otherwise,
// changing nothing;
// slice(start, stop) clamps both ends as Python's a[start:stop]; set_slice(start, values)
// replaces values.size() items from start and throws value_error, changing nothing, when they
// do not fit (an Array cannot change its length, as in Python).
//
// Locking, as Python's synchronized wrapper: get, set, slice, set_slice, to_vector take
// get_lock() for the whole operation, so none of them sees a slice half-written by another. span()
// (Python's get_obj()) is the raw memory: hold get_lock() around work on it that must be atomic.
// The lock is an mp::rlock of its own by default, or one passed to create() (by the Lock
// parameter, mp::lock or mp::rlock). raw_array<T> has no lock (Python's RawArray); its get/set
// are plain accesses, atomic for lock-free T.
//
// Robustness: as mp::value, when an operation finds that a process died holding the lock, it makes
// the lock consistent, releases it and throws owner_died_error; the items that process was
// writing may be half written.
//
// Thread- and process-safety: the locked operations may be called concurrently from any thread of
// any process holding a handle. A handle object itself is not synchronized.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/process_arg.hpp>
#include <tandem/mp/detail/shm_segment.hpp>
#include <tandem/mp/value.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace tandem::mp {

namespace detail {

/// The shared-memory file's kind tag for arrays ("ARR1").
inline constexpr std::uint32_t array_segment_kind = 0x4152'5231;

/// What an array's payload starts with; the items follow at `array_items_offset`.
struct array_header {
  std::uint64_t count;
  std::uint64_t item_size;
  std::uint64_t item_align;
};
inline constexpr std::size_t array_items_offset = 128;

/// Common members of array and raw_array.
template <class T>
class array_base {
  static_assert(
      std::is_trivially_copyable_v<T>,
      "mp::array<T> holds its Ts as bytes in shared memory: T must be trivially copyable");
  static_assert(alignof(T) <= array_items_offset, "T is over-aligned for an mp::array");

public:
  using value_type = T;

  /// The number of items (Python's len(a)).
  std::size_t size() const noexcept { return count_; }

  /// The shared items themselves, without locking (Python's get_obj()).
  std::span<T> span() const noexcept { return {items_, count_}; }

  /// The shared-memory file's descriptor (owned by the array; what a child process receives).
  int fd() const noexcept { return seg_ ? seg_->fd() : -1; }

  /// Maps the array behind `fd` (taking ownership of it). Throws segment_error when `fd` is not an
  /// array's memory, and bad_message_error when it holds items of another size or alignment.
  static std::shared_ptr<shm_segment> attach_segment(int fd) {
    auto seg = std::make_shared<shm_segment>(shm_segment::attach(fd, array_segment_kind));
    const auto& h = *static_cast<const array_header*>(seg->payload());
    if (seg->payload_size() < array_items_offset || h.item_size != sizeof(T) ||
        h.item_align != alignof(T) ||
        h.count > (seg->payload_size() - array_items_offset) / sizeof(T))
      throw bad_message_error("an mp::array argument holds items of " +
                              std::to_string(h.item_size) + " bytes, expected " +
                              std::to_string(sizeof(T)) +
                              ": the types of sender and receiver differ");
    return seg;
  }

protected:
  array_base() = default;

  explicit array_base(std::shared_ptr<shm_segment> seg) noexcept : seg_(std::move(seg)) {
    count_ = static_cast<std::size_t>(static_cast<const array_header*>(seg_->payload())->count);
    items_ = reinterpret_cast<T*>(static_cast<std::byte*>(seg_->payload()) + // NOLINT
                                  array_items_offset);
  }

  static std::shared_ptr<shm_segment> make_segment(std::size_t count) {
    constexpr std::size_t most = (std::numeric_limits<std::size_t>::max() / 2) / sizeof(T);
    if (count > most)
      throw value_error("mp::array: " + std::to_string(count) + " items do not fit in memory");
    auto seg = std::make_shared<shm_segment>(shm_segment::create(
        array_segment_kind, array_items_offset + count * sizeof(T), "tandem-array"));
    ::new (seg->payload()) array_header{count, sizeof(T), alignof(T)};
    return seg;
  }

  // The position of Python index `i`, or value_error.
  std::size_t position(std::ptrdiff_t i) const {
    auto n = static_cast<std::ptrdiff_t>(count_);
    std::ptrdiff_t p = i < 0 ? i + n : i;
    if (p < 0 || p >= n)
      throw index_error("mp::array index " + std::to_string(i) + " is out of range for " +
                        std::to_string(count_) + " items");
    return static_cast<std::size_t>(p);
  }

  // Python's clamping of a slice bound.
  std::size_t bound(std::ptrdiff_t i) const noexcept {
    auto n = static_cast<std::ptrdiff_t>(count_);
    if (i < 0) i = std::max<std::ptrdiff_t>(i + n, 0);
    return static_cast<std::size_t>(std::min(i, n));
  }

  T read(std::size_t p) const noexcept {
    if constexpr (lock_free_value<T>) return std::atomic_ref<T>{items_[p]}.load();
    T out;
    std::memcpy(static_cast<void*>(&out), &items_[p], sizeof(T));
    return out;
  }
  void write(std::size_t p, const T& v) const noexcept {
    if constexpr (lock_free_value<T>)
      std::atomic_ref<T>{items_[p]}.store(v);
    else
      std::memcpy(static_cast<void*>(&items_[p]), &v, sizeof(T));
  }

  std::vector<T> copy(std::size_t from, std::size_t to) const {
    std::vector<T> out(to > from ? to - from : 0);
    if (!out.empty())
      std::memcpy(static_cast<void*>(out.data()), items_ + from, out.size() * sizeof(T));
    return out;
  }

  void fill_from(std::size_t start, std::span<const T> values) const {
    if (start > count_ || values.size() > count_ - start)
      throw value_error("mp::array: " + std::to_string(values.size()) + " items from index " +
                        std::to_string(start) + " do not fit in " + std::to_string(count_) +
                        " items (an array cannot change its length)");
    if (!values.empty())
      std::memcpy(static_cast<void*>(items_ + start), values.data(), values.size() * sizeof(T));
  }

  std::shared_ptr<shm_segment> seg_;
  T* items_ = nullptr;
  std::size_t count_ = 0;
};

} // namespace detail

/// Ts in shared memory with a cross-process lock; see the file comment.
template <class T, class Lock = rlock>
class array : public detail::array_base<T> {
  using base = detail::array_base<T>;

public:
  using lock_type = Lock;
  using lock_handle = typename Lock::handle;

  /// An empty handle (size() is 0; nothing else is defined on it).
  array() = default;

  /// `count` zero-filled items with a lock of their own. Throws segment_error when the memory
  /// cannot be made (ENOMEM, EMFILE).
  static array create(std::size_t count) { return create(count, Lock::create()); }

  /// `count` zero-filled items guarded by `lock`. Throws usage_error for an empty lock handle.
  static array create(std::size_t count, lock_handle shared) {
    if (!shared) throw usage_error("mp::array: the lock handle passed to create() is empty");
    return array{base::make_segment(count), std::move(shared)};
  }

  /// A copy of `values` (Python's Array(typecode, [..])).
  static array create(std::span<const T> values) {
    auto a = create(values.size());
    a.fill_from(0, values);
    return a;
  }
  static array create(std::initializer_list<T> values) {
    return create(std::span<const T>{values.begin(), values.size()});
  }

  /// Item `i` (negative counts from the end), under the lock. Throws value_error out of range,
  /// owner_died_error as the file comment says.
  T get(std::ptrdiff_t i) const {
    auto p = this->position(i);
    return detail::under_value_lock(*lock_, [&] { return this->read(p); });
  }

  /// Sets item `i`, under the lock; throws as get(), changing nothing.
  void set(std::ptrdiff_t i, const T& v) const {
    auto p = this->position(i);
    detail::under_value_lock(*lock_, [&] { this->write(p, v); });
  }

  /// A copy of items [start, stop) with Python's clamping, under the lock (Python's a[start:stop]).
  std::vector<T> slice(std::ptrdiff_t start, std::ptrdiff_t stop) const {
    auto from = this->bound(start);
    auto to = this->bound(stop);
    return detail::under_value_lock(*lock_, [&] { return this->copy(from, to); });
  }

  /// Replaces values.size() items from `start` (negative counts from the end), under the lock.
  /// Throws value_error, changing nothing, when they do not fit.
  void set_slice(std::ptrdiff_t start, std::span<const T> values) const {
    auto from = start < 0 ? this->bound(start) : static_cast<std::size_t>(start);
    detail::under_value_lock(*lock_, [&] { this->fill_from(from, values); });
  }

  /// A copy of every item, under the lock (Python's a[:]).
  std::vector<T> to_vector() const {
    return detail::under_value_lock(*lock_, [&] { return this->copy(0, this->count_); });
  }

  /// The lock (Python's get_lock()).
  Lock& get_lock() const noexcept { return *lock_; }

  /// The lock's handle, to share it.
  const lock_handle& shared_lock() const noexcept { return lock_; }

  /// Rebuilds an array from its parts (process arguments use it).
  static array adopt(std::shared_ptr<detail::shm_segment> seg, lock_handle shared) {
    return array{std::move(seg), std::move(shared)};
  }

private:
  array(std::shared_ptr<detail::shm_segment> seg, lock_handle shared) noexcept
      : base(std::move(seg)), lock_(std::move(shared)) {}

  lock_handle lock_;
};

/// Ts in shared memory without a lock (Python's RawArray); see the file comment.
template <class T>
class raw_array : public detail::array_base<T> {
  using base = detail::array_base<T>;

public:
  raw_array() = default;

  /// `count` zero-filled items. Throws segment_error when the memory cannot be made.
  static raw_array create(std::size_t count) { return raw_array{base::make_segment(count)}; }

  /// A copy of `values`.
  static raw_array create(std::span<const T> values) {
    auto a = create(values.size());
    a.fill_from(0, values);
    return a;
  }
  static raw_array create(std::initializer_list<T> values) {
    return create(std::span<const T>{values.begin(), values.size()});
  }

  /// Item `i` (negative counts from the end); value_error out of range.
  T get(std::ptrdiff_t i) const { return this->read(this->position(i)); }

  /// Sets item `i`; value_error out of range, changing nothing.
  void set(std::ptrdiff_t i, const T& v) const { this->write(this->position(i), v); }

  /// A copy of items [start, stop), clamped as Python's slices.
  std::vector<T> slice(std::ptrdiff_t start, std::ptrdiff_t stop) const {
    return this->copy(this->bound(start), this->bound(stop));
  }

  /// Replaces values.size() items from `start`; value_error, changing nothing, when they do not
  /// fit.
  void set_slice(std::ptrdiff_t start, std::span<const T> values) const {
    this->fill_from(start < 0 ? this->bound(start) : static_cast<std::size_t>(start), values);
  }

  static raw_array adopt(std::shared_ptr<detail::shm_segment> seg) {
    return raw_array{std::move(seg)};
  }

private:
  explicit raw_array(std::shared_ptr<detail::shm_segment> seg) noexcept : base(std::move(seg)) {}
};

} // namespace tandem::mp

/// An array reaches a spawn child as its memory's descriptor and, for array, its lock.
template <class T, class Lock>
struct tandem::mp::detail::process_arg<tandem::mp::array<T, Lock>> {
  static void save(arg_writer& w, const tandem::mp::array<T, Lock>& a) {
    if (a.fd() < 0) throw usage_error("an empty mp::array handle cannot be passed to a process");
    auto index = static_cast<std::uint32_t>(w.add_fd(a.fd()));
    auto old = w.bytes.size();
    w.bytes.resize(old + sizeof index);
    std::memcpy(w.bytes.data() + old, &index, sizeof index);
    save_nested(w, a.shared_lock());
  }
  static tandem::mp::array<T, Lock> load(arg_reader& r) {
    std::uint32_t index = 0;
    if (r.bytes.size() < sizeof index)
      throw bad_message_error("an mp::array argument is truncated");
    std::memcpy(&index, r.bytes.data(), sizeof index);
    auto seg = tandem::mp::detail::array_base<T>::attach_segment(r.fd(index));
    std::size_t at = sizeof index;
    auto shared = load_nested<typename Lock::handle>(r, at);
    return tandem::mp::array<T, Lock>::adopt(std::move(seg), std::move(shared));
  }
};

template <class T>
struct tandem::mp::detail::process_arg<tandem::mp::raw_array<T>> {
  static void save(arg_writer& w, const tandem::mp::raw_array<T>& a) {
    if (a.fd() < 0)
      throw usage_error("an empty mp::raw_array handle cannot be passed to a process");
    auto index = static_cast<std::uint32_t>(w.add_fd(a.fd()));
    auto old = w.bytes.size();
    w.bytes.resize(old + sizeof index);
    std::memcpy(w.bytes.data() + old, &index, sizeof index);
  }
  static tandem::mp::raw_array<T> load(arg_reader& r) {
    std::uint32_t index = 0;
    if (r.bytes.size() != sizeof index)
      throw bad_message_error("an mp::raw_array argument has the wrong size");
    std::memcpy(&index, r.bytes.data(), sizeof index);
    return tandem::mp::raw_array<T>::adopt(
        tandem::mp::detail::array_base<T>::attach_segment(r.fd(index)));
  }
};
