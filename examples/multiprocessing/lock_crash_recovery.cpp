// A worker killed while holding a lock, and the others recovering (tandem::mp::lock's robust
// semantics; Python's multiprocessing.Lock would stay locked for good).
//
// Three workers move money between two accounts in shared memory under one mp::lock, each
// transfer in two steps (debit, then credit): the lock keeps the total constant between
// transfers. One worker is killed with SIGKILL in the middle of a transfer, holding the lock.
// The next worker to acquire the lock gets owner_died_error *while holding it*: it repairs the
// books from the transfer journal the dead worker left, calls make_consistent(), and everyone
// carries on. The total is exact at the end.
//
//   try {
//     std::scoped_lock guard{*lock};
//     transfer();
//   } catch (const tandem::owner_died_error&) {   // we hold the lock; its holder died
//     repair();
//     lock->make_consistent();
//     lock->release();
//   }

#include <tandem/error.hpp>
#include <tandem/mp/event.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/value.hpp>
#include <tandem/runtime.hpp>

#include "check.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace mp = tandem::mp;

namespace {

// The books: two accounts and a journal of the transfer in progress (0 when none).
struct books {
  std::int64_t a;
  std::int64_t b;
  std::int64_t in_flight; // debited from a, not yet credited to b
  std::int64_t transfers;
};

constexpr std::int64_t total = 1'000'000;

// Puts back what a dead worker debited but never credited.
void repair(books& bk) {
  if (bk.in_flight != 0) {
    std::printf("  repairing: %lld debited but not credited, crediting it now\n",
                static_cast<long long>(bk.in_flight));
    bk.b += bk.in_flight;
    bk.in_flight = 0;
    ++bk.transfers;
  }
}

// One transfer of 1 from a to b, in two steps. `stall` makes it stop half way (to be killed).
void transfer(books& bk, mp::event* stalled) {
  bk.in_flight = 1;
  bk.a -= 1;
  if (stalled != nullptr) {
    stalled->set();
    std::this_thread::sleep_for(60s); // killed here, holding the lock
  }
  bk.b += 1;
  bk.in_flight = 0;
  ++bk.transfers;
}

void worker(mp::lock::handle lock, mp::raw_value<books> shared, mp::event::handle stalled,
            mp::value<std::int64_t> recovered, int transfers, bool doomed) {
  auto& bk = shared.get_obj();
  for (int i = 0; i < transfers; ++i) {
    try {
      std::scoped_lock guard{*lock};
      transfer(bk, doomed && i == transfers / 2 ? stalled.get() : nullptr);
    } catch (const tandem::owner_died_error&) {
      // We hold the lock; the books may be half updated.
      repair(bk);
      recovered.fetch_add(1);
      lock->make_consistent();
      lock->release();
      --i; // our own transfer did not run
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  auto lock = mp::lock::create();
  auto shared = mp::raw_value<books>::create(books{total, 0, 0, 0});
  auto stalled = mp::event::create();
  auto recovered = mp::value<std::int64_t>::create();
  constexpr int transfers = 2000;

  std::printf("three workers, %d transfers each; the first will be killed mid-transfer\n",
              transfers);
  mp::process doomed{worker, lock, shared, stalled, recovered, transfers, true};
  doomed.start();
  stalled->wait();
  std::vector<mp::process> others;
  for (int i = 0; i < 2; ++i)
    others.emplace_back(worker, lock, shared, stalled, recovered, transfers, false);
  for (auto& p : others) p.start();
  std::this_thread::sleep_for(50ms); // let the others queue up on the held lock
  std::printf("killing %s, which holds the lock half way through a transfer\n",
              doomed.name().c_str());
  doomed.kill();
  doomed.join();
  for (auto& p : others) p.join();

  const auto& bk = shared.get_obj();
  std::printf("exit codes: %d (killed), %d, %d\n", doomed.exitcode().value_or(0),
              others[0].exitcode().value_or(-1), others[1].exitcode().value_or(-1));
  std::printf("a = %lld, b = %lld, a + b = %lld (expected %lld); transfers %lld; recoveries %lld\n",
              static_cast<long long>(bk.a), static_cast<long long>(bk.b),
              static_cast<long long>(bk.a + bk.b), static_cast<long long>(total),
              static_cast<long long>(bk.transfers), static_cast<long long>(recovered.get()));
  example::check(doomed.exitcode() == -9, "the doomed worker was killed by SIGKILL");
  example::check(others[0].exitcode() == 0 && others[1].exitcode() == 0,
                 "the other workers finished their transfers");
  example::check(recovered.get() == 1, "exactly one worker saw owner_died_error and repaired");
  example::check(bk.a + bk.b == total, "the total is exact after the repair");
  example::check(bk.transfers == transfers / 2 + 1 + 2 * transfers,
                 "every transfer is counted once, the interrupted one completed by the repair");
  example::check(!lock->not_recoverable() && !lock->locked(), "the lock is usable and free");
  return example::exit_status();
}
