// Waiting for something to happen: tandem::event and tandem::condition (Python's threading.Event
// and threading.Condition).
//
// An event is a flag threads can wait for: the start gun of a race. A condition is a lock plus a
// waiting room: threads wait there, with the lock released, until the state the lock guards is
// what they need, and threads that change that state notify them.
//
//   Python                                        tandem
//   gun = threading.Event(); gun.wait(); gun.set() tandem::event gun; gun.wait(); gun.set();
//   cv = threading.Condition()                    tandem::condition cv;
//   with cv: cv.wait_for(pred, timeout=5)         std::scoped_lock g{cv}; cv.wait_for(pred, 5s);
//   cv.notify(2); cv.notify_all()                 cv.notify(2); cv.notify_all();

#include <tandem/condition.hpp>
#include <tandem/error.hpp>
#include <tandem/event.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include "check.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// -- 1. the start gun -------------------------------------------------------------------------

void race() {
  std::printf("1. an event as a start gun\n");
  tandem::event gun;
  std::atomic<int> ready{0};
  std::atomic<int> running{0};

  std::vector<tandem::thread> runners;
  for (int i = 0; i < 4; ++i) {
    runners.emplace_back(tandem::thread::options{.name = "runner-" + std::to_string(i + 1)}, [&] {
      ++ready;
      gun.wait(); // every runner blocks here until the gun is set
      ++running;
      std::printf("   %s: off!\n", tandem::current_thread().name().c_str());
    });
  }
  for (auto& r : runners) r.start();

  // A timed wait returns false when the event is still not set at the deadline.
  bool set_yet = gun.wait(20ms);
  std::printf("   gun.wait(20ms) before the shot: %s\n", set_yet ? "true" : "false");
  example::check(!set_yet, "a timed wait on an unset event times out");

  // Polling with a short sleep is fine for a demonstration; programs should wait on a primitive.
  while (ready.load() < 4) std::this_thread::sleep_for(1ms);
  example::check(running.load() == 0, "no runner starts before the gun");
  std::printf("   all 4 runners at the line, none running; firing\n");
  gun.set(); // wakes every waiter at once; later wait() calls return at once too
  for (auto& r : runners) r.join();
  example::check(running.load() == 4, "every runner starts after the gun");
  example::check(gun.is_set() && gun.wait(0s), "a set event stays set");
}

// -- 2. a bakery: condition, wait_for, notify(n), notify_all ----------------------------------

struct bakery {
  tandem::condition cv;  // owns an rlock; guards everything below
  std::deque<int> shelf; // numbers of the loaves for sale
  bool closed = false;
  std::vector<int> sold; // every loaf bought, by anyone
};

// A customer buys loaves until the bakery is closed and the shelf is empty.
void customer(bakery& shop, int& bought) {
  auto me = tandem::current_thread().name();
  for (;;) {
    std::scoped_lock guard{shop.cv}; // Python: `with shop.cv:`
    // wait_for() releases the lock while waiting and holds it when the predicate is evaluated,
    // so the predicate reads the shelf safely. It returns the predicate's last value.
    shop.cv.wait_for([&] { return !shop.shelf.empty() || shop.closed; });
    if (shop.shelf.empty()) break; // closed, and nothing left
    int loaf = shop.shelf.front();
    shop.shelf.pop_front();
    shop.sold.push_back(loaf);
    ++bought;
    std::printf("   %s buys loaf %d\n", me.c_str(), loaf);
  }
  std::printf("   %s goes home with %d loaves\n", me.c_str(), bought);
}

void bake() {
  std::printf("\n2. a condition: customers wait for bread, the baker notifies\n");
  bakery shop;

  // Before opening: a customer who waits at most 50 ms gives up; wait_for returns false.
  {
    std::scoped_lock guard{shop.cv};
    auto t0 = std::chrono::steady_clock::now();
    bool got = shop.cv.wait_for([&] { return !shop.shelf.empty(); }, 50ms);
    auto waited = std::chrono::steady_clock::now() - t0;
    std::printf("   an impatient customer: wait_for(..., 50ms) = %s after %lld ms\n",
                got ? "true" : "false",
                static_cast<long long>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()));
    example::check(!got && waited >= 30ms, "wait_for times out with the predicate still false");
  }

  constexpr int n_customers = 3;
  int bought[n_customers] = {};
  std::vector<tandem::thread> customers;
  for (int i = 0; i < n_customers; ++i)
    customers.emplace_back(tandem::thread::options{.name = "customer-" + std::to_string(i + 1)},
                           customer, std::ref(shop), std::ref(bought[i]));
  for (auto& c : customers) c.start();

  // The baker bakes batches. notify(n) wakes at most n waiting customers (one per loaf), so
  // customers are not woken for bread that is not there.
  int next_loaf = 1;
  for (int batch_size : {2, 1, 3, 2}) {
    std::this_thread::sleep_for(10ms); // baking takes time
    std::scoped_lock guard{shop.cv};
    for (int i = 0; i < batch_size; ++i) shop.shelf.push_back(next_loaf++);
    std::printf("   baker: %d fresh loaves, notify(%d)\n", batch_size, batch_size);
    shop.cv.notify(static_cast<std::size_t>(batch_size));
  }
  {
    std::scoped_lock guard{shop.cv};
    shop.closed = true;
    std::printf("   baker: closing, notify_all()\n");
    shop.cv.notify_all(); // everyone must learn about closing
  }
  for (auto& c : customers) c.join();

  int total = 0;
  for (int b : bought) total += b;
  std::sort(shop.sold.begin(), shop.sold.end());
  std::vector<int> all(static_cast<std::size_t>(next_loaf - 1));
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i) + 1;
  std::printf("   %d loaves baked, %d bought\n", next_loaf - 1, total);
  example::check(shop.sold == all, "every loaf is sold exactly once");
  example::check(shop.shelf.empty(), "the shelf is empty at closing");

  // notify() needs the lock, as in Python: otherwise a waiter could miss the notification.
  try {
    shop.cv.notify();
    example::check(false, "notify without the lock throws");
  } catch (const tandem::usage_error&) {
    std::printf("   notify() without holding the lock: usage_error\n");
  }
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  race();
  bake();
  return example::exit_status();
}
