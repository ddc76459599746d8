// Flavours for the conformance bodies.
//
// A conformance body is written once as a doctest template over a *subject*: a struct naming the
// primitive type under test and the flavour it runs in.
//
//   template <class T, class F = tandem::test::inprocess>
//   struct subject { using type = T; using flavour = F; };
//
//   TEST_CASE_TEMPLATE_DEFINE("a released lock can be acquired again", S, lock_contract) {
//     using F = typename S::flavour;
//     auto sut = F::template make<typename S::type>();
//     ...
//     typename F::parties ps;
//     ps.start([&] { ... });        // a concurrent party: a thread here, a process for tandem::mp
//     ps.join();
//   }
//   TEST_CASE_TEMPLATE_INVOKE(lock_contract, subject<tandem::lock>, subject<tandem::rlock>);
//
// A flavour provides:
//   make<T>(args...)          creates a T where every party can reach it, returns a pointer-like
//                             owner (std::unique_ptr here; shared memory for tandem::mp);
//   make<shared<U>>(value)    a std::atomic<U>-like cell every party can read and write;
//   parties                   start(fn) runs fn concurrently; join() waits for all; the
//                             destructor joins what is left; count() how many were started;
//   name                      for messages.
// Bodies must not share anything between parties except what make<> created.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

namespace tandem::test {

/// An atomic cell shared by the parties of a conformance body.
template <class U>
using shared = std::atomic<U>;

/// The in-process flavour: parties are threads, objects live on the heap.
struct inprocess {
  static constexpr const char* name = "in-process";

  template <class T, class... Args>
  static std::unique_ptr<T> make(Args&&... args) {
    return std::make_unique<T>(std::forward<Args>(args)...);
  }

  class parties {
  public:
    parties() = default;
    parties(const parties&) = delete;
    parties& operator=(const parties&) = delete;
    ~parties() { join(); }

    /// Runs `fn` in a new thread.
    void start(std::function<void()> fn) { threads_.emplace_back(std::move(fn)); }

    /// Runs `fn(i)` for i in [0, n), each in a new thread.
    void start_n(std::size_t n, const std::function<void(std::size_t)>& fn) {
      for (std::size_t i = 0; i < n; ++i)
        threads_.emplace_back([fn, i] { fn(i); });
    }

    /// Waits for every party started so far.
    void join() {
      for (auto& t : threads_)
        if (t.joinable())
          t.join();
    }

    std::size_t count() const noexcept { return threads_.size(); }

  private:
    std::vector<std::thread> threads_;
  };
};

/// The usual subject: type T in flavour F.
template <class T, class F = inprocess>
struct subject {
  using type = T;
  using flavour = F;
};

} // namespace tandem::test
