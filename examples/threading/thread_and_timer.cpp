// Running code in other threads: tandem::thread and tandem::timer (Python's threading.Thread and
// threading.Timer).
//
//   Python                                          tandem
//   t = Thread(target=f, args=("tea", 2))           tandem::thread t{f, "tea", 2};
//   t = Thread(target=f, name="kettle")             tandem::thread t{{.name = "kettle"}, f};
//   class Countdown(Thread): def run(self): ...     class countdown : public tandem::thread {
//                                                     void run() override; };
//   t.start(); t.join(); t.join(timeout=0.05)       t.start(); t.join(); t.join(50ms);
//   t.is_alive(); t.name                            t.is_alive(); t.name()
//   Timer(0.1, f).start(); timer.cancel()           tandem::timer tm{100ms, f}; tm.start();
//                                                   tm.cancel();
//
// As in Python, constructing a thread does not start it: start() does, and returns once the
// thread runs. The target's arguments are copied when the thread is constructed.

#include <tandem/error.hpp>
#include <tandem/event.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>
#include <tandem/timer.hpp>

#include "check.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

long long ms_since(clock_type::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0).count();
}

// -- 1. a target function with arguments ------------------------------------------------------

std::atomic<int> cups_brewed{0};

void brew(const std::string& drink, int cups) {
  for (int i = 1; i <= cups; ++i) {
    std::printf("   [%s] brewing %s, cup %d of %d\n", tandem::current_thread().name().c_str(),
                drink.c_str(), i, cups);
    ++cups_brewed;
  }
}

void targets() {
  std::printf("1. a thread with a target and arguments\n");
  std::string drink = "tea";
  tandem::thread t{brew, drink, 2}; // copies "tea" and 2 now
  drink = "coffee";                 // so this does not change what the thread brews
  std::printf("   constructed %s; is_alive() = %s (constructing does not start it)\n",
              t.name().c_str(), t.is_alive() ? "true" : "false");
  example::check(!t.is_alive(), "a thread does not run before start()");
  t.start();
  t.join();
  example::check(cups_brewed.load() == 2, "the target ran with its arguments");
  example::check(!t.is_alive(), "a joined thread is no longer alive");

  // Options by designated initializer; a lambda target.
  tandem::thread kettle{{.name = "kettle"}, [] { brew("water", 1); }};
  kettle.start();
  kettle.join();
  example::check(kettle.name() == "kettle", "the thread has the name it was given");
}

// -- 2. a subclass overriding run() -----------------------------------------------------------

class countdown : public tandem::thread {
public:
  explicit countdown(int from) : tandem::thread({.name = "countdown"}), from_(from) {}

  // run() executes in this object: it must not be destroyed while its thread runs.
  ~countdown() override {
    if (is_alive()) join();
  }

  int last() const { return last_; }

protected:
  void run() override {
    for (int i = from_; i >= 0; --i) {
      std::printf("   [%s] %d\n", name().c_str(), i);
      last_ = i;
    }
  }

private:
  int from_;
  int last_ = -1; // written by the thread, read after join()
};

void subclass() {
  std::printf("\n2. a subclass that overrides run()\n");
  countdown c{3};
  c.start();
  c.join();
  example::check(c.last() == 0, "run() counted down to zero");
}

// -- 3. join with a timeout -------------------------------------------------------------------

void join_timeout() {
  std::printf("\n3. join with a timeout\n");
  tandem::event door;
  tandem::thread guest{{.name = "guest"}, [&] {
                         door.wait(); // stays until the door opens
                         std::printf("   [guest] the door is open, leaving\n");
                       }};
  guest.start();

  auto t0 = clock_type::now();
  bool left = guest.join(50ms);
  std::printf("   join(50ms) = %s after %lld ms; is_alive() = %s\n", left ? "true" : "false",
              ms_since(t0), guest.is_alive() ? "true" : "false");
  example::check(!left && guest.is_alive(), "join(timeout) returns false while the thread runs");

  door.set();
  left = guest.join(); // no timeout: until it has finished
  example::check(left && !guest.is_alive(), "join() returns true once the thread has finished");

  try {
    tandem::current_thread().join(); // a thread cannot wait for itself
    example::check(false, "joining the current thread throws");
  } catch (const tandem::usage_error&) {
    std::printf("   current_thread().join(): usage_error (it would wait forever)\n");
  }
}

// -- 4. timers --------------------------------------------------------------------------------

void timers() {
  std::printf("\n4. a timer that fires, and one that is cancelled\n");
  tandem::event rang;
  auto t0 = clock_type::now();
  tandem::timer alarm{100ms, [&] {
                        std::printf("   [alarm] ring! after %lld ms\n", ms_since(t0));
                        rang.set();
                      }};
  alarm.start(); // the countdown begins now, in the timer's own thread
  alarm.join();
  example::check(rang.is_set(), "the timer ran its function");
  example::check(clock_type::now() - t0 >= 100ms, "not before its interval");

  std::atomic<bool> fired{false};
  tandem::timer reminder{10s, [&] { fired = true; }};
  reminder.start();
  t0 = clock_type::now();
  reminder.cancel(); // stops the countdown: the function will not run
  reminder.join();   // returns at once, not after 10 s
  std::printf("   cancelled a 10 s reminder; its thread ended after %lld ms, fired = %s\n",
              ms_since(t0), fired ? "true" : "false");
  example::check(!fired.load(), "a cancelled timer does not run its function");
  example::check(clock_type::now() - t0 < 5s, "cancel() ends the wait at once");
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  targets();
  subclass();
  join_timeout();
  timers();
  return example::exit_status();
}
