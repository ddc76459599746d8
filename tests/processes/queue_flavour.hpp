// The forked flavour of the conformance bodies (tests/conformance/flavour.hpp): parties are
// processes made with fork(), and every object a body creates lives in shared memory, so the
// bodies written for threads run unchanged across processes.
//
// make<T>(args...) builds T in its own anonymous MAP_SHARED mapping: a shared<U> cell is an
// atomic every process sees; a cross-process queue handle built there is inherited by every
// child (its segment is shared as well). Only the creating process destroys it.
//
// A party is a fork() child that runs its function and ends with _exit: 0 when it returned, 70
// when it threw. join() waits for every child and checks each exit status; a party the
// watchdog would otherwise never see is therefore a failed CHECK, not a silent pass. Assertions
// inside a party run in the child and are not reported: bodies record outcomes in shared cells
// and assert in the parent, which is what the queue bodies do.
#pragma once

#include "conformance/flavour.hpp"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace tandem::test {

/// The cross-process flavour: parties are forked processes, objects live in shared memory.
struct forked {
  static constexpr const char* name = "forked processes";

  /// Destroys the object and unmaps its memory, in the process that created it.
  template <class T>
  struct unmap {
    pid_t owner = ::getpid();
    void operator()(T* p) const noexcept {
      if (::getpid() != owner) return; // a child's copy of the owner: not its to destroy
      p->~T();
      ::munmap(p, sizeof(T));
    }
  };

  template <class T>
  using pointer = std::unique_ptr<T, unmap<T>>;

  template <class T, class... Args>
  static pointer<T> make(Args&&... args) {
    void* mem =
        ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::bad_alloc();
    try {
      return pointer<T>{::new (mem) T(std::forward<Args>(args)...)};
    } catch (...) {
      ::munmap(mem, sizeof(T));
      throw;
    }
  }

  class parties {
  public:
    parties() = default;
    parties(const parties&) = delete;
    parties& operator=(const parties&) = delete;
    ~parties() { join(); }

    /// Runs `fn` in a new process.
    void start(const std::function<void()>& fn) {
      pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        // doctest's crash handlers would report a party's crash as the parent's test failing.
        for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTERM}) ::signal(sig, SIG_DFL);
        int code = 0;
        try {
          fn();
        } catch (...) {
          code = 70;
        }
        ::_exit(code);
      }
      pids_.push_back(pid);
    }

    /// Runs `fn(i)` for i in [0, n), each in a new process.
    void start_n(std::size_t n, const std::function<void(std::size_t)>& fn) {
      for (std::size_t i = 0; i < n; ++i) start([&fn, i] { fn(i); });
    }

    /// Waits for every party started so far; each must have returned normally.
    void join() {
      for (auto pid : pids_) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0) {
        }
        CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0),
                      "a party process failed: status ", status);
      }
      count_ += pids_.size();
      pids_.clear();
    }

    std::size_t count() const noexcept { return count_ + pids_.size(); }

  private:
    std::vector<pid_t> pids_;
    std::size_t count_ = 0;
  };
};

} // namespace tandem::test
