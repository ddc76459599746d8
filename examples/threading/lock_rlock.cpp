// Mutual exclusion with tandem::lock and tandem::rlock (Python's threading.Lock and RLock).
//
// Two bank accounts hold 1,000 each, and four clerks move money between them. A transfer takes
// money out of one account (read the balance, compute, write it back), then puts it into the other.
// Without a lock, clerks interleave between those steps: one overwrites what another just wrote (a
// lost update), so money appears or vanishes, and an auditor reading in the middle of a transfer
// sees money that is in neither account. Holding a lock over the whole transfer makes it
// indivisible, and the total stays 2,000.
//
//   Python                            tandem
//   lock = threading.Lock()           tandem::lock lock;
//   with lock: ...                    { std::scoped_lock guard{lock}; ... }
//   lock.acquire(timeout=0.01)        lock.acquire(10ms)
//   lock.release()                    lock.release()
//   rlock = threading.RLock()         tandem::rlock rlock;

#include <tandem/error.hpp>
#include <tandem/lock.hpp>
#include <tandem/rlock.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include "check.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr long initial_total = 2000;
constexpr int clerks = 4;
constexpr int transfers_per_clerk = 20'000;

// The balances are atomics only so that the unlocked version is a *race condition* (a logic bug
// this example can show) rather than a *data race* (undefined behaviour in C++, where anything may
// happen). Each load and store is indivisible; the transfer made of them is not.
struct bank {
  std::atomic<long> a{initial_total / 2};
  std::atomic<long> b{initial_total / 2};

  long total() const {
    return a.load(std::memory_order_relaxed) + b.load(std::memory_order_relaxed);
  }
};

// Adds `amount` (which may be negative) to an account: read, compute, write.
void add(std::atomic<long>& account, long amount) {
  long balance = account.load(std::memory_order_relaxed);
  // In a real program the thread could be preempted here at any time; yielding makes it happen
  // often enough to see on every run. Whoever writes in between is overwritten: a lost update.
  std::this_thread::yield();
  account.store(balance + amount, std::memory_order_relaxed);
}

// Moves `amount` from one account to the other. In between the two steps the money is in
// neither account, so a total read at that moment is wrong.
void transfer(std::atomic<long>& from, std::atomic<long>& to, long amount) {
  add(from, -amount);
  add(to, amount);
}

// A clerk moves small amounts back and forth; `guard` is called around each transfer.
template <class Guard>
void clerk(bank& accounts, int seed, Guard guard) {
  for (int i = 0; i < transfers_per_clerk; ++i) {
    long amount = (seed * 31 + i * 7) % 50 + 1;
    guard([&] {
      if (i % 2 == 0)
        transfer(accounts.a, accounts.b, amount);
      else
        transfer(accounts.b, accounts.a, amount);
    });
  }
}

// Runs the clerks, plus an auditor that keeps reading the total while they work. Returns how
// often the auditor saw a wrong total.
template <class Guard>
long run_bank(bank& accounts, Guard guard) {
  std::atomic<bool> open{true};
  long wrong_totals = 0;
  tandem::thread auditor{{.name = "auditor"}, [&] {
                           while (open.load()) {
                             long total = 0;
                             guard([&] { total = accounts.total(); });
                             if (total != initial_total) ++wrong_totals;
                             std::this_thread::yield();
                           }
                         }};
  std::vector<tandem::thread> workers;
  for (int c = 0; c < clerks; ++c)
    workers.emplace_back(tandem::thread::options{.name = "clerk-" + std::to_string(c + 1)},
                         [&, c] { clerk(accounts, c, guard); });

  auditor.start();
  for (auto& w : workers) w.start();
  for (auto& w : workers) w.join();
  open = false;
  auditor.join(); // join() also makes the auditor's count visible here
  return wrong_totals;
}

// A ledger whose public operations each take the ledger's lock, and may call one another. With
// a plain lock, deposit_all() would block forever on its own lock when it calls deposit(); an rlock
// may be acquired again by the thread that holds it (it counts the acquisitions, and is free again
// after as many releases).
class ledger {
public:
  void deposit(long amount) {
    std::scoped_lock guard{mtx_};
    balance_ += amount;
    ++entries_;
    deepest_ = std::max(deepest_, mtx_.recursion_count());
  }

  void deposit_all(const std::vector<long>& amounts) {
    std::scoped_lock guard{mtx_}; // the whole batch is one indivisible step
    for (long amount : amounts) deposit(amount);
  }

  long balance() {
    std::scoped_lock guard{mtx_};
    return balance_;
  }

  std::size_t deepest() {
    std::scoped_lock guard{mtx_};
    return deepest_;
  }

private:
  tandem::rlock mtx_;
  long balance_ = 0;        // guarded by mtx_
  long entries_ = 0;        // guarded by mtx_
  std::size_t deepest_ = 0; // guarded by mtx_: the highest recursion level seen
};

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};

  std::printf("1. %d clerks, %d transfers each, NO lock\n", clerks, transfers_per_clerk);
  bank unlocked;
  long seen = run_bank(unlocked, [](auto&& step) { step(); });
  long total = unlocked.total();
  std::printf("   total afterwards: %ld (should be %ld): %ld %s by lost updates\n", total,
              initial_total, total > initial_total ? total - initial_total : initial_total - total,
              total > initial_total ? "created" : "destroyed");
  std::printf("   the auditor saw a wrong total %ld times\n", seen);
  if (total == initial_total)
    std::printf("   (no lost update this time: races depend on timing, which is why they are "
                "hard to find)\n");

  std::printf("\n2. the same with a tandem::lock held over each transfer (and each audit)\n");
  bank locked;
  tandem::lock bank_lock;
  seen = run_bank(locked, [&](auto&& step) {
    std::scoped_lock guard{bank_lock}; // Python: `with bank_lock:`
    step();
  });
  total = locked.total();
  std::printf("   total afterwards: %ld, the auditor saw a wrong total %ld times\n", total, seen);
  example::check(total == initial_total, "with the lock, the total is exact");
  example::check(seen == 0, "with the lock, the auditor never sees a transfer half done");

  std::printf("\n3. Python's acquire/release, and a timeout\n");
  example::check(bank_lock.acquire(), "acquire() takes a free lock");
  std::printf("   locked() = %s\n", bank_lock.locked() ? "true" : "false");
  // A lock is not re-entrant: acquiring it again, even from the same thread, waits. With a
  // timeout the wait ends and acquire() says it failed; without one it would never end.
  bool again = bank_lock.acquire(20ms);
  std::printf("   acquire(20ms) while held: %s\n", again ? "true" : "false (timed out)");
  example::check(!again, "a held lock cannot be acquired again");
  bank_lock.release();
  try {
    bank_lock.release(); // releasing a lock that is not locked is a bug: usage_error
    example::check(false, "releasing an unlocked lock throws");
  } catch (const tandem::usage_error& e) {
    std::printf("   release() of an unlocked lock: usage_error: %s\n", e.what());
  }

  std::printf("\n4. tandem::rlock: operations that call each other under one lock\n");
  ledger book;
  std::vector<tandem::thread> tellers;
  for (int t = 0; t < 3; ++t)
    tellers.emplace_back([&book] {
      for (int i = 0; i < 1000; ++i) book.deposit_all({1, 2, 3});
    });
  for (auto& t : tellers) t.start();
  for (auto& t : tellers) t.join();
  std::printf("   balance %ld after 3 tellers x 1000 batches of 1+2+3; deepest recursion %zu\n",
              book.balance(), book.deepest());
  example::check(book.balance() == 3 * 1000 * 6, "the rlock keeps the ledger exact");
  example::check(book.deepest() == 2, "deposit() ran at recursion level 2 inside deposit_all()");

  // An rlock has an owner: only the thread that acquired it may release it.
  tandem::rlock owned;
  owned.acquire();
  tandem::thread intruder{[&] {
    try {
      owned.release();
      example::check(false, "another thread cannot release an rlock");
    } catch (const tandem::usage_error&) {
      std::printf("   another thread's release(): usage_error (an rlock belongs to its owner)\n");
    }
  }};
  intruder.start();
  intruder.join();
  owned.release();

  return example::exit_status();
}
