// tandem::local<T>: Python's `threading.local`, one value of T per thread.
//
// A local holds a separate T for every thread that uses it. A thread's value is built lazily, in
// that thread, the first time the thread calls get() (or `->`, `*`), from copies of the arguments
// given to the local's constructor; it is destroyed when that thread ends. Threads never see each
// other's values, and two locals never share values.
//
//   tandem::local<std::vector<int>> scratch;            // each thread: an empty vector
//   tandem::local<std::string> greeting{"hello"};       // each thread: its own "hello"
//
//   void worker() {
//     scratch->push_back(42);                           // this thread's vector only
//     greeting.get() += ", world";
//   }
//
// States: per thread, a local either has no value yet, or has one (built on first use). There is
// no way to remove a thread's value short of ending the thread or destroying the local.
//
// When values are destroyed:
//   - at the end of their thread, for every kind of thread (std::thread, pthreads, tandem::thread).
//     For a tandem::thread this happens before join() returns; for other threads after their
//     C++ `thread_local` objects are destroyed;
//   - when the local itself is destroyed: every thread's value is destroyed then, in the thread
//     that destroys the local (as Python drops every thread's dict when the local dies).
// A value's destructor may use other locals.
//
// Thread-safety: get(), `->` and `*` may be called concurrently from any threads; each returns the
// calling thread's value, which the caller then uses without synchronization (it is that thread's
// alone). The reference stays valid until the thread ends or the local is destroyed.
//
// Lifetime hazards: destroying a local while another thread calls get() on it, or uses its value,
// is undefined behaviour. A value's destructor runs in the destroying thread when the local dies
// first, so T must not depend on being destroyed by its own thread. A T whose constructor uses
// the same local recurses without end.
//
// Performance: get() on a value that exists is a thread_local load, a bounds check and a load. The
// first use in a thread allocates the value (and, once per thread, the thread's table).
//
// A local is neither copyable nor movable.
#pragma once

#include <tandem/detail/local_storage.hpp>

#include <concepts>
#include <cstddef>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tandem {

template <class T>
class local {
public:
  using value_type = T;

  // -- construction ---------------------------------------------------------------------------

  /// A local whose value in each thread is `T(args...)`, built from copies of `args` taken now
  /// (the originals are not referenced afterwards). With no arguments, each value is
  /// value-initialized (`T()`: zero for scalars).
  ///
  /// Throws std::bad_alloc, or what copying an argument throws.
  // clang-format 14 mangles requires-clauses.
  // clang-format off
  template <class... Args>
    requires std::constructible_from<T, const std::decay_t<Args>&...>
  explicit local(Args&&... args)
      : factory_(std::make_unique<factory<std::decay_t<Args>...>>(std::forward<Args>(args)...)),
        slot_(detail::local_acquire_slot()) {}
  // clang-format on

  local(const local&) = delete;
  local& operator=(const local&) = delete;

  /// Destroys every thread's value, in the calling thread.
  ~local() { detail::local_release_slot(slot_); }

  // -- access ---------------------------------------------------------------------------------

  /// The calling thread's value, built now (from copies of the constructor's arguments) if this
  /// thread has none yet. Throws what T's constructor throws, or std::bad_alloc; the thread then
  /// still has no value, and the next call tries again.
  T& get() {
    if (auto* v = detail::local_find(slot_)) return static_cast<detail::local_value<T>*>(v)->value;
    return static_cast<detail::local_value<T>*>(detail::local_create(slot_, *factory_))->value;
  }

  /// As get(): the calling thread's value.
  const T& get() const { return const_cast<local*>(this)->get(); }

  T* operator->() { return &get(); }
  const T* operator->() const { return &get(); }
  T& operator*() { return get(); }
  const T& operator*() const { return get(); }

private:
  template <class... Args>
  class factory final : public detail::local_factory {
  public:
    template <class... Xs>
    explicit factory(Xs&&... xs) : args_(std::forward<Xs>(xs)...) {}

    std::unique_ptr<detail::local_value_base> make() const override {
      return std::apply(
          [](const Args&... xs) { return std::make_unique<detail::local_value<T>>(xs...); }, args_);
    }

  private:
    std::tuple<Args...> args_;
  };

  std::unique_ptr<detail::local_factory> factory_;
  std::size_t slot_;
};

} // namespace tandem
