// The module-level functions of Python's threading, in tandem.
//
//   Python                              tandem
//   threading.current_thread()          tandem::current_thread()      (a thread&)
//   threading.main_thread()             tandem::main_thread()
//   threading.enumerate()               tandem::enumerate()           (std::vector<thread>)
//   threading.active_count()            tandem::active_count()
//   threading.get_ident()               tandem::get_ident()           (std::thread::id)
//   threading.get_native_id()           tandem::get_native_id()       (the kernel's thread id)
//   threading.excepthook = hook         tandem::set_excepthook(hook)
//   threading.stack_size(size)          tandem::stack_size(size)      (returns the old size)
//   threading.TIMEOUT_MAX               tandem::timeout_max

#include <tandem/error.hpp>
#include <tandem/event.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>
#include <tandem/timeout.hpp>

#include "check.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

void who_am_i() {
  std::printf("1. who am I?\n");
  auto& me = tandem::current_thread();
  std::printf("   current_thread().name() = %s, main_thread().name() = %s\n", me.name().c_str(),
              tandem::main_thread().name().c_str());
  example::check(me == tandem::main_thread(), "main() runs in the main thread");
  example::check(me.name() == "MainThread", "the main thread is called MainThread");
  example::check(!me.daemon(), "the main thread is not a daemon");

  // Inside a tandem thread, current_thread() is that thread's handle.
  tandem::thread worker{
      {.name = "worker"}, [] {
        auto& self = tandem::current_thread();
        std::printf("   in the worker: current_thread().name() = %s, get_ident() %s ident(), "
                    "get_native_id() = %ld (gettid() = %ld)\n",
                    self.name().c_str(),
                    tandem::get_ident() == self.ident() ? "==" : "!=", tandem::get_native_id(),
                    static_cast<long>(gettid()));
        example::check(self.name() == "worker", "current_thread() names the worker in the worker");
        example::check(tandem::get_ident() == self.ident(),
                       "get_ident() is current_thread().ident()");
        example::check(tandem::get_native_id() == static_cast<long>(gettid()),
                       "get_native_id() is the kernel's thread id");
        example::check(!(self == tandem::main_thread()), "the worker is not the main thread");
      }};
  example::check(!worker.ident().has_value(), "a thread has no ident before it starts");
  worker.start();
  worker.join();
  example::check(worker.ident().has_value() && worker.ident() != tandem::get_ident(),
                 "a started thread has its own ident, kept after it ends");
}

void who_is_alive() {
  std::printf("\n2. enumerate() and active_count()\n");
  std::size_t before = tandem::active_count();
  tandem::event release; // holds the sleepers alive while we look at them
  std::vector<tandem::thread> sleepers;
  for (int i = 1; i <= 3; ++i)
    sleepers.emplace_back(tandem::thread::options{.name = "sleeper-" + std::to_string(i)},
                          [&] { release.wait(); });
  for (auto& s : sleepers) s.start(); // once start() returns, enumerate() lists the thread

  auto alive = tandem::enumerate();
  std::printf("   %zu threads alive:", alive.size());
  for (const auto& t : alive) std::printf(" %s", t.name().c_str());
  std::printf("\n   active_count() = %zu\n", tandem::active_count());
  example::check(tandem::active_count() == before + 3, "the three sleepers are counted");
  example::check(alive.size() == tandem::active_count(), "active_count() is enumerate().size()");
  int listed = 0;
  for (const auto& t : alive)
    for (const auto& s : sleepers) listed += t == s ? 1 : 0;
  example::check(listed == 3, "enumerate() lists each sleeper");

  release.set();
  for (auto& s : sleepers) s.join(); // a joined thread is no longer listed
  std::printf("   after join: active_count() = %zu\n", tandem::active_count());
  example::check(tandem::active_count() == before, "joined threads are no longer counted");
}

void excepthooks() {
  std::printf("\n3. excepthook: what happens to an exception that escapes a thread\n");
  // The default prints "Exception in thread NAME:" and the exception to stderr; the program goes
  // on. Here a hook of our own collects the failures instead, as a service would log them.
  std::atomic<int> caught{0};
  std::string failed_thread;
  std::string message;
  tandem::set_excepthook([&](const tandem::excepthook_args& args) {
    try {
      std::rethrow_exception(args.exc);
    } catch (const std::exception& e) {
      message = e.what();
    }
    failed_thread = args.thread != nullptr ? args.thread->name() : "?";
    ++caught;
  });

  tandem::thread failing{{.name = "parser"}, [] { throw std::runtime_error("unexpected '}'"); }};
  failing.start();
  example::check(failing.join(), "a thread whose target throws still finishes and joins");
  // The hook ran in the failing thread, before join() returned.
  std::printf("   our hook got: thread '%s', exception \"%s\"\n", failed_thread.c_str(),
              message.c_str());
  example::check(caught.load() == 1 && failed_thread == "parser" && message == "unexpected '}'",
                 "the excepthook receives the exception and the thread");
  example::check(!failing.is_alive(), "the failed thread is no longer alive");

  tandem::set_excepthook({}); // an empty function restores the default hook
}

void stacks_and_timeouts() {
  std::printf("\n4. stack_size() and timeout_max\n");
  std::size_t old = tandem::stack_size(256 * 1024); // threads started from now on
  std::printf("   stack_size(256 KiB) returned the previous setting %zu (0 = the platform's "
              "default)\n",
              old);
  tandem::thread small{[] {
    char buffer[64 * 1024] = {}; // fits in 256 KiB
    buffer[sizeof buffer - 1] = 1;
    std::printf("   a thread with a 256 KiB stack used %zu bytes of it\n", sizeof buffer);
  }};
  small.start();
  small.join();
  example::check(tandem::stack_size() == 256 * 1024, "stack_size() reports the setting");
  try {
    tandem::stack_size(1024); // below Python's 32 KiB minimum
    example::check(false, "a tiny stack size is refused");
  } catch (const tandem::value_error&) {
    std::printf("   stack_size(1024): value_error (at least 32 KiB, or 0)\n");
  }
  tandem::stack_size(old);

  std::printf("   timeout_max = %lld s (about %lld years); longer timeouts mean forever\n",
              static_cast<long long>(tandem::timeout_max.count()),
              static_cast<long long>(tandem::timeout_max.count() / (365LL * 24 * 3600)));
  tandem::timeout century{std::chrono::hours{24 * 365 * 100}};
  tandem::timeout beyond{tandem::timeout_max + std::chrono::seconds{1}};
  example::check(!century.is_forever(), "a century is still a finite timeout");
  example::check(beyond.is_forever(), "a timeout beyond timeout_max is forever");
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  who_am_i();
  who_is_alive();
  excepthooks();
  stacks_and_timeouts();
  return example::exit_status();
}
