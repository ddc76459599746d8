// detail::queue_ring: the growable ring buffer behind tandem::queue and tandem::simple_queue.
//
// A FIFO of T in one power-of-two array: push_back and pop_front are an index update and one
// construction or destruction, with no allocation once the ring has reached the queue's working
// size (a bounded queue stops growing at its maxsize). Elements never move except when the ring
// grows.
//
// Exception safety: push_back gives the strong guarantee. It grows first (allocating a new array
// and copying or moving the elements with std::move_if_noexcept; if one of them throws, the new
// array is discarded and the ring is unchanged), then constructs the new element in a free slot;
// if that construction throws, nothing was changed. pop_front, clear and swap never throw.
//
// Thread-safety: none; the owning queue serializes every call under its mutex.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace tandem::detail {

template <class T>
class queue_ring {
public:
  // -- construction ---------------------------------------------------------------------------

  queue_ring() noexcept = default;
  queue_ring(const queue_ring&) = delete;
  queue_ring& operator=(const queue_ring&) = delete;

  /// Takes `other`'s elements and array; `other` is left empty.
  queue_ring(queue_ring&& other) noexcept { swap(other); }

  ~queue_ring() {
    clear();
    release(slots_, capacity());
  }

  // -- modifiers ------------------------------------------------------------------------------

  /// Appends a T constructed from `x`. Strong guarantee; `x` is only read (or moved from, when
  /// it is an rvalue) once the element's slot exists.
  template <class U>
  void push_back(U&& x) {
    if (size_ == capacity()) grow();
    ::new (static_cast<void*>(slots_ + ((head_ + size_) & mask_))) T(std::forward<U>(x));
    ++size_;
  }

  /// Destroys the first element. Requires: !empty().
  void pop_front() noexcept {
    std::destroy_at(slots_ + head_);
    head_ = (head_ + 1) & mask_;
    --size_;
  }

  /// Destroys every element; keeps the array.
  void clear() noexcept {
    if constexpr (!std::is_trivially_destructible_v<T>) {
      for (std::size_t i = 0; i < size_; ++i) std::destroy_at(slots_ + ((head_ + i) & mask_));
    }
    head_ = 0;
    size_ = 0;
  }

  /// Exchanges the contents (and arrays) of two rings.
  void swap(queue_ring& other) noexcept {
    std::swap(slots_, other.slots_);
    std::swap(mask_, other.mask_);
    std::swap(head_, other.head_);
    std::swap(size_, other.size_);
  }

  // -- observers ------------------------------------------------------------------------------

  /// The first element. Requires: !empty().
  T& front() noexcept { return slots_[head_]; }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t capacity() const noexcept { return slots_ == nullptr ? 0 : mask_ + 1; }

private:
  // Small elements start with a cache line or two of slots; large ones with a few.
  static constexpr std::size_t initial_capacity = sizeof(T) <= 16 ? 16 : 4;

  static T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }

  static void release(T* p, std::size_t n) noexcept {
    if (p != nullptr) std::allocator<T>{}.deallocate(p, n);
  }

  // Doubles the array, keeping the elements in order from index 0. Strong guarantee.
  void grow() {
    auto old_capacity = capacity();
    auto new_capacity = old_capacity == 0 ? initial_capacity : old_capacity * 2;
    T* fresh = allocate(new_capacity);
    std::size_t built = 0;
    try {
      for (; built < size_; ++built)
        ::new (static_cast<void*>(fresh + built)) T(std::move_if_noexcept(at(built)));
    } catch (...) {
      std::destroy(fresh, fresh + built);
      release(fresh, new_capacity);
      throw;
    }
    for (std::size_t i = 0; i < size_; ++i) std::destroy_at(&at(i));
    release(slots_, old_capacity);
    slots_ = fresh;
    mask_ = new_capacity - 1;
    head_ = 0;
  }

  T& at(std::size_t i) noexcept { return slots_[(head_ + i) & mask_]; }

  T* slots_ = nullptr;
  std::size_t mask_ = 0; // capacity - 1; capacity is a power of two
  std::size_t head_ = 0; // index of the first element
  std::size_t size_ = 0;
};

} // namespace tandem::detail
