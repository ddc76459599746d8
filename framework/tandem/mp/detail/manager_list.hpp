// tandem::mp::list<T>: Python's list, living in a tandem::mp::manager's shared memory, found or
// created by name (`m.list<std::int64_t>("queue")`) and used by every process that attached the
// manager.
//
//   auto jobs = m.list<std::string>("jobs");
//   jobs.append("parse");
//   jobs.extend(std::vector<std::string>{"build", "test"});
//   jobs.insert(0, "fetch");
//   std::string first = jobs.pop(0);                  // "fetch"
//   auto middle = jobs.slice(1, 3);                   // Python's jobs[1:3]
//   jobs.sort();
//
// Elements are stored as bytes like a dict's values (see <tandem/mp/detail/manager_codec.hpp>);
// index, count and remove compare elements with T's operator==, sort orders them with
// operator< (or a given comparison), as Python compares objects rather than bytes. Indexes
// follow Python: a negative index counts from the end.
//
// Atomicity: every member is one atomic operation (the list's process-shared mutex is held
// throughout); to_vector() and slice() return consistent snapshots; extend and sort are atomic
// too. Process death: as for mp::dict, a process killed at any instruction of any member leaves
// the list as it was before that call or as it is after it, and the next call repairs it and
// throws owner_died_error without doing its own work (call it again); repairs() counts them.
//
// Errors (Python's in brackets): an index out of range in get, set and pop, and pop on an empty
// list throw index_error (a value_error) [IndexError]; index and remove of a missing element throw
// value_error [ValueError]; slice with step 0 throws value_error; segment_error (ENOSPC) when the
// segment is full (the list is then unchanged). Comparisons run under the list's mutex: one that
// throws leaves the list unchanged.
//
// Thread- and process-safety: every member may be called concurrently from any thread of any
// process; a handle is a cheap reference (copies refer to the same list).
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/manager_codec.hpp>
#include <tandem/mp/detail/manager_core.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

namespace tandem::mp {

class manager;

/// Python's list in a manager's shared memory. See the file comment.
template <class T>
class list {
  static_assert(std::is_object_v<T> && !std::is_const_v<T>, "a list holds non-const objects");

  using element_bytes = detail::manager_encoded<T, false>;

public:
  using value_type = T;
  using size_type = std::size_t;

  /// An empty handle: every member but operator bool is undefined on it. Get real ones from
  /// mp::manager::list<T>(name).
  list() noexcept = default;

  // -- reading --------------------------------------------------------------------------------

  /// Python's `len(l)`.
  size_type size() const { return core_.size(); }
  bool empty() const { return size() == 0; }

  /// Python's `l[index]`. Throws index_error (IndexError) when out of range.
  T get(std::int64_t index) const {
    std::optional<T> out;
    core_.get(index, &store, &out);
    return std::move(*out);
  }

  /// Python's `list(l)`: every element, in order, taken in one atomic step.
  std::vector<T> to_vector() const { return slice(0, std::numeric_limits<std::int64_t>::max()); }

  /// Python's `l[start:stop:step]` (clamped bounds, negative indexes from the end), taken in
  /// one atomic step. Throws value_error when `step` is 0.
  std::vector<T> slice(std::int64_t start, std::int64_t stop, std::int64_t step = 1) const {
    std::vector<T> out;
    core_.slice(
        start, stop, step,
        [](void* ctx, detail::manager_bytes, detail::manager_bytes e) {
          static_cast<std::vector<T>*>(ctx)->push_back(detail::manager_decode<T, false>(e));
        },
        &out);
    return out;
  }

  /// Python's `l.index(x, start, stop)`: the first index of an element equal to `x` in
  /// [start, stop). Throws value_error (ValueError) when there is none.
  std::size_t index(const T& x, std::int64_t start = 0,
                    std::int64_t stop = std::numeric_limits<std::int64_t>::max()) const {
    auto i = core_.find(&matches, const_cast<T*>(&x), start, stop);
    if (i < 0)
      throw value_error("the element is not in list \"" + name_ + "\" (Python's ValueError)");
    return static_cast<std::size_t>(i);
  }

  /// Python's `l.count(x)`.
  std::size_t count(const T& x) const { return core_.count(&matches, const_cast<T*>(&x)); }

  /// Python's `x in l`.
  bool contains(const T& x) const {
    return core_.find(&matches, const_cast<T*>(&x), 0, std::numeric_limits<std::int64_t>::max()) >=
           0;
  }

  // -- changes --------------------------------------------------------------------------------

  /// Python's `l.append(x)`.
  void append(const T& x) { insert(std::numeric_limits<std::int64_t>::max(), x); }

  /// Python's `l.extend(xs)`: appends every element, as one atomic operation.
  template <std::ranges::input_range R>
  void extend(const R& xs) {
    std::vector<std::unique_ptr<element_bytes>> enc;
    std::vector<detail::manager_bytes> raw;
    for (const auto& x : xs) {
      enc.push_back(std::make_unique<element_bytes>(x));
      raw.push_back(enc.back()->bytes());
    }
    core_.insert(std::numeric_limits<std::int64_t>::max(), raw);
  }

  /// Python's `l.insert(index, x)`: before `index`, clamped to [0, size()].
  void insert(std::int64_t index, const T& x) {
    element_bytes e{x};
    detail::manager_bytes raw[1] = {e.bytes()};
    core_.insert(index, raw);
  }

  /// Python's `l[index] = x`. Throws index_error (IndexError) when out of range.
  void set(std::int64_t index, const T& x) {
    element_bytes e{x};
    core_.set(index, e.bytes());
  }

  /// Python's `l.pop(index)` (the last element by default). Throws index_error (IndexError)
  /// when the list is empty or `index` is out of range.
  T pop(std::int64_t index = -1) {
    std::optional<T> out;
    core_.pop(index, &store, &out);
    return std::move(*out);
  }

  /// Python's `l.remove(x)`: removes the first element equal to `x`. Throws value_error
  /// (ValueError) when there is none.
  void remove(const T& x) {
    if (!core_.remove(&matches, const_cast<T*>(&x)))
      throw value_error("list.remove(x): x is not in list \"" + name_ + "\" (Python's ValueError)");
  }

  /// Python's `l.sort()`: stable, by operator<, as one atomic operation.
  void sort() { sort(std::less<T>{}); }

  /// Python's `l.sort(key=...)` in C++ form: stable, by the strict weak order `less`.
  template <class Less>
  void sort(Less less) {
    auto cmp = [](void* ctx, detail::manager_bytes a, detail::manager_bytes b) {
      return (*static_cast<Less*>(ctx))(detail::manager_decode<T, false>(a),
                                        detail::manager_decode<T, false>(b));
    };
    core_.sort(cmp, &less);
  }

  /// Python's `l.clear()`.
  void clear() { core_.clear(); }

  // -- observers ------------------------------------------------------------------------------

  const std::string& name() const noexcept { return name_; }
  std::uint64_t repairs() const { return core_.repairs(); }
  explicit operator bool() const noexcept { return static_cast<bool>(core_); }

private:
  friend class manager;

  list(detail::manager_list core, std::string name)
      : core_(std::move(core)), name_(std::move(name)) {}

  static void store(void* ctx, detail::manager_bytes e) {
    static_cast<std::optional<T>*>(ctx)->emplace(detail::manager_decode<T, false>(e));
  }

  static bool matches(void* ctx, detail::manager_bytes e) {
    return detail::manager_decode<T, false>(e) == *static_cast<const T*>(ctx);
  }

  detail::manager_list core_;
  std::string name_;
};

} // namespace tandem::mp
