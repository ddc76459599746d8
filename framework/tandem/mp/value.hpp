// tandem::mp::value<T> and mp::raw_value<T>: Python's multiprocessing.Value and RawValue, one
// trivially copyable T in shared memory that every process holding a handle reads and writes.
//
//   auto hits = tandem::mp::value<std::int64_t>::create();      // zero, with its own rlock
//   tandem::mp::process p{worker, hits};                          // any start method
//   ...
//   void worker(tandem::mp::value<std::int64_t> hits) {
//     std::scoped_lock guard{hits.get_lock()};                    // Python: with v.get_lock():
//     hits.get_obj() += 1;                                        //           v.value += 1
//   }
//   hits.fetch_add(1);                                            // lock-free, no lock at all
//
// A value is a handle: copies (and a handle passed to a child process) refer to the same T. The
// T lives in this process's default arena (see <tandem/mp/detail/robust_arena.hpp>); it is
// zero-filled, then set to the initial value, and freed when the last handle of the creating
// process (and of every spawn child given one) is gone. A fork child shares its parent's handles:
// the parent keeps its handle while the child uses the value.
//
// Locking, as Python's synchronized wrapper: get() and set() take get_lock() for their read or
// write, so a whole T is never seen half-written by them; a read-modify-write (`v.value += 1`)
// needs the caller to hold get_lock() around it, exactly as in Python. The lock is an mp::rlock
// of its own by default, or one passed to create() (an mp::lock or mp::rlock handle, by the Lock
// parameter), which several values may share. raw_value<T> has no lock (Python's RawValue).
//
// Lock-free fast paths: when std::atomic_ref<T> is always lock-free for T (integers, pointers,
// and trivially copyable types of 1, 2, 4 or 8 bytes), atomic_load, atomic_store, exchange,
// compare_exchange and, for arithmetic T, fetch_add and fetch_sub work on the shared T directly,
// sequentially consistent, without the lock. They do not exclude a process that holds the lock
// and writes through get_obj(): use one discipline per value.
//
// Robustness: the lock is robust (see <tandem/mp/rlock.hpp>). When get() or set() find that a
// process died holding it, they make the lock consistent, release it and throw owner_died_error:
// the lock works again, but a set() the dead process interrupted may have left a torn T, so the
// caller should set the value again. A caller holding get_lock() itself sees owner_died_error from
// its own acquire, as with any mp::rlock.
//
// Thread- and process-safety: get(), set() and the atomics may be called concurrently from any
// thread of any process holding a handle. A handle object itself is not synchronized.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/process_arg.hpp>
#include <tandem/mp/detail/robust_arena.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/rlock.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace tandem::mp {

namespace detail {

/// One T in an arena block.
template <class T>
struct value_cell {
  T value;
};

/// True when std::atomic_ref<T> works on the shared T without a lock.
template <class T>
inline constexpr bool lock_free_value = std::atomic_ref<T>::is_always_lock_free;

/// Runs `body` under `lock`; a dead holder found on the way is reported after the lock has been
/// made consistent and released, so the lock stays usable.
template <class Lock, class Body>
decltype(auto) under_value_lock(Lock& lock, Body&& body) {
  try {
    lock.acquire();
  } catch (const owner_died_error&) {
    lock.make_consistent();
    lock.release();
    throw owner_died_error("a process died while holding this shared value's lock: the lock is "
                           "consistent again, but a write it interrupted may be half done; set "
                           "the value again");
  }
  std::unique_lock<Lock> guard{lock, std::adopt_lock};
  return body();
}

/// Common members of value and raw_value: the cell, its atomics and the process argument format.
template <class T>
class value_base {
  static_assert(std::is_trivially_copyable_v<T>,
                "mp::value<T> holds its T as bytes in shared memory: T must be trivially copyable");

public:
  using value_type = T;
  using cell_handle = arena_handle<value_cell<T>>;

  /// The shared T itself, without locking (Python's get_obj()).
  T& get_obj() const noexcept { return cell_->value; }

  // -- lock-free fast paths (see the file comment) --------------------------------------------

  T atomic_load() const noexcept requires lock_free_value<T> {
    return std::atomic_ref<T>{cell_->value}.load();
  }
  void atomic_store(T v) const noexcept requires lock_free_value<T> {
    std::atomic_ref<T>{cell_->value}.store(v);
  }
  T exchange(T v) const noexcept requires lock_free_value<T> {
    return std::atomic_ref<T>{cell_->value}.exchange(v);
  }
  /// As std::atomic_ref<T>::compare_exchange_strong: on failure `expected` gets the current T.
  bool compare_exchange(T& expected, T desired) const noexcept requires lock_free_value<T> {
    return std::atomic_ref<T>{cell_->value}.compare_exchange_strong(expected, desired);
  }
  T fetch_add(T d) const noexcept
      requires(lock_free_value<T>&& std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return std::atomic_ref<T>{cell_->value}.fetch_add(d);
  }
  T fetch_sub(T d) const noexcept
      requires(lock_free_value<T>&& std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return std::atomic_ref<T>{cell_->value}.fetch_sub(d);
  }

  /// The arena handle of the T (what a child process receives).
  const cell_handle& cell() const noexcept { return cell_; }

protected:
  value_base() = default;
  explicit value_base(cell_handle cell) noexcept : cell_(std::move(cell)) {}

  static cell_handle make_cell(const T& initial) {
    auto cell = cell_handle::make();
    std::memcpy(static_cast<void*>(&cell->value), &initial, sizeof(T));
    return cell;
  }

  // Reads or writes the whole T; with a lock-free T as one atomic access, so a reader without the
  // lock never sees a torn T.
  T read() const noexcept {
    if constexpr (lock_free_value<T>) return atomic_load();
    T out;
    std::memcpy(static_cast<void*>(&out), &cell_->value, sizeof(T));
    return out;
  }
  void write(const T& v) const noexcept {
    if constexpr (lock_free_value<T>)
      atomic_store(v);
    else
      std::memcpy(static_cast<void*>(&cell_->value), &v, sizeof(T));
  }

  cell_handle cell_;
};

// Appends a nested argument: its length, then its bytes.
template <class U>
void save_nested(arg_writer& w, const U& x) {
  std::vector<std::byte> inner;
  arg_writer iw{inner, w.fds};
  process_arg<U>::save(iw, x);
  auto n = static_cast<std::uint32_t>(inner.size());
  auto old = w.bytes.size();
  w.bytes.resize(old + sizeof n);
  std::memcpy(w.bytes.data() + old, &n, sizeof n);
  w.bytes.insert(w.bytes.end(), inner.begin(), inner.end());
}

// Reads a nested argument at `at`, which moves past it.
template <class U>
U load_nested(arg_reader& r, std::size_t& at) {
  std::uint32_t n = 0;
  if (r.bytes.size() - at < sizeof n)
    throw bad_message_error("a shared value argument is truncated");
  std::memcpy(&n, r.bytes.data() + at, sizeof n);
  at += sizeof n;
  if (r.bytes.size() - at < n) throw bad_message_error("a shared value argument is truncated");
  arg_reader inner{r.bytes.subspan(at, n), r.fds};
  at += n;
  return process_arg<U>::load(inner);
}

} // namespace detail

/// A T in shared memory with a cross-process lock; see the file comment. Lock is mp::rlock (the
/// default, Python's) or mp::lock.
template <class T, class Lock = rlock>
class value : public detail::value_base<T> {
  using base = detail::value_base<T>;

public:
  using lock_type = Lock;
  using lock_handle = typename Lock::handle;

  /// An empty handle (every member but the assignment operators is undefined on it).
  value() = default;

  /// A value holding `initial` (zero when omitted) with a lock of its own. Throws segment_error
  /// when the default arena cannot be made or is full.
  static value create(const T& initial = T{}) { return create(initial, Lock::create()); }

  /// A value holding `initial`, guarded by `lock` (which other values may share). Throws
  /// usage_error for an empty lock handle.
  static value create(const T& initial, lock_handle shared) {
    if (!shared) throw usage_error("mp::value: the lock handle passed to create() is empty");
    return value{base::make_cell(initial), std::move(shared)};
  }

  /// Reads the T under the lock (Python's `v.value`). Blocks while another thread or process
  /// holds the lock. Throws owner_died_error as the file comment says.
  T get() const {
    return detail::under_value_lock(*lock_, [&] { return this->read(); });
  }

  /// Writes the T under the lock (Python's `v.value = x`). Blocks and throws as get().
  void set(const T& v) const {
    detail::under_value_lock(*lock_, [&] { this->write(v); });
  }

  /// The lock (Python's get_lock()): hold it around a read-modify-write through get_obj().
  Lock& get_lock() const noexcept { return *lock_; }

  /// The lock's handle, to share it with another value.
  const lock_handle& shared_lock() const noexcept { return lock_; }

  /// Rebuilds a value from its parts (process arguments use it).
  static value adopt(typename base::cell_handle cell, lock_handle shared) {
    return value{std::move(cell), std::move(shared)};
  }

private:
  value(typename base::cell_handle cell, lock_handle shared) noexcept
      : base(std::move(cell)), lock_(std::move(shared)) {}

  lock_handle lock_;
};

/// A T in shared memory without a lock (Python's RawValue); see the file comment.
template <class T>
class raw_value : public detail::value_base<T> {
  using base = detail::value_base<T>;

public:
  raw_value() = default;

  /// A raw value holding `initial` (zero when omitted). Throws segment_error when the default
  /// arena cannot be made or is full.
  static raw_value create(const T& initial = T{}) { return raw_value{base::make_cell(initial)}; }

  /// Reads the T: one atomic load when T is lock-free (never torn), else a plain copy that a
  /// concurrent set() may tear.
  T get() const noexcept { return this->read(); }

  /// Writes the T, as get() reads it.
  void set(const T& v) const noexcept { this->write(v); }

  static raw_value adopt(typename base::cell_handle cell) { return raw_value{std::move(cell)}; }

private:
  explicit raw_value(typename base::cell_handle cell) noexcept : base(std::move(cell)) {}
};

} // namespace tandem::mp

/// A value reaches a spawn child as its cell and its lock (each an arena reference).
template <class T, class Lock>
struct tandem::mp::detail::process_arg<tandem::mp::value<T, Lock>> {
  static void save(arg_writer& w, const tandem::mp::value<T, Lock>& v) {
    save_nested(w, v.cell());
    save_nested(w, v.shared_lock());
  }
  static tandem::mp::value<T, Lock> load(arg_reader& r) {
    std::size_t at = 0;
    auto cell = load_nested<typename tandem::mp::value<T, Lock>::cell_handle>(r, at);
    auto shared = load_nested<typename Lock::handle>(r, at);
    return tandem::mp::value<T, Lock>::adopt(std::move(cell), std::move(shared));
  }
};

template <class T>
struct tandem::mp::detail::process_arg<tandem::mp::raw_value<T>> {
  static void save(arg_writer& w, const tandem::mp::raw_value<T>& v) { save_nested(w, v.cell()); }
  static tandem::mp::raw_value<T> load(arg_reader& r) {
    std::size_t at = 0;
    return tandem::mp::raw_value<T>::adopt(
        load_nested<typename tandem::mp::raw_value<T>::cell_handle>(r, at));
  }
};
