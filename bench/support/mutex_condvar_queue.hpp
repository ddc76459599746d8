// The baseline bounded queue: the textbook std::mutex + two std::condition_variable queue over a
// std::deque, with notify_one on every put and every get.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <utility>

namespace tandem::bench {

template <class T>
class mutex_condvar_queue {
public:
  // -- construction ---------------------------------------------------------------------------

  explicit mutex_condvar_queue(std::size_t maxsize) : maxsize_(maxsize) {}
  mutex_condvar_queue(const mutex_condvar_queue&) = delete;
  mutex_condvar_queue& operator=(const mutex_condvar_queue&) = delete;

  // -- putting and getting --------------------------------------------------------------------

  // Notifying after the unlock spares the woken thread a trip back to sleep on the mutex: the
  // stronger of the two textbook variants, so it is the one tandem is measured against.
  void put(T item) {
    {
      std::unique_lock lk{mtx_};
      not_full_.wait(lk, [this] { return items_.size() < maxsize_; });
      items_.push_back(std::move(item));
    }
    not_empty_.notify_one();
  }

  T get() {
    T item;
    {
      std::unique_lock lk{mtx_};
      not_empty_.wait(lk, [this] { return !items_.empty(); });
      item = std::move(items_.front());
      items_.pop_front();
    }
    not_full_.notify_one();
    return item;
  }

private:
  const std::size_t maxsize_;
  std::mutex mtx_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<T> items_; // guarded by mtx_
};

} // namespace tandem::bench
