// tandem::internal::no_destroy<T>: an object built on first use and never destroyed.
//
// For process-wide registries that threads, atexit handlers and forked children may still reach
// while static destructors run: the object outlives every static, so nothing reaches a destroyed
// registry.
//
//   static no_destroy<registry> instance{};   // inside a function
//   instance.get().add(...);
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace tandem::internal {

template <class T>
class no_destroy {
public:
  template <class... Args>
  explicit no_destroy(Args&&... args) {
    std::construct_at(ptr(), std::forward<Args>(args)...);
  }
  no_destroy(const no_destroy&) = delete;
  no_destroy& operator=(const no_destroy&) = delete;
  ~no_destroy() = default; // deliberately leaves the object alive

  T& get() noexcept { return *ptr(); }

private:
  T* ptr() noexcept { return std::launder(reinterpret_cast<T*>(storage_)); }

  alignas(T) std::byte storage_[sizeof(T)];
};

} // namespace tandem::internal
