// Producers and consumers across processes with tandem::mp::queue and mp::joinable_queue
// (Python's multiprocessing.Queue and JoinableQueue, with Python 3.13's shutdown).
//
//   1. three shop processes put orders into a bounded joinable queue; three cashier processes
//      take them, put a receipt into a result queue back to the main process and call
//      task_done(); join() returns when every order is *done*; shutdown() then stops the
//      cashiers, whose get() throws shut_down_error
//   2. a producer may exit right after put(): there is no feeder thread, the item is in shared
//      memory when put() returns
//   3. a consumer killed mid-stream does not wedge the queue: the others finish the work
//
// The queue lives in shared memory (an anonymous memfd): every process holding a handle uses the
// same items, locks and counters. Passing a queue to a process passes a handle (Python passes
// the queue object the same way); the main process keeps its own.
//
//   Python                                        tandem
//   q = JoinableQueue(8)                          mp::joinable_queue<order> q{8};
//   r = Queue()                                   mp::queue<receipt> r;
//   Process(target=f, args=(q, r)).start()        mp::process p{f, q, r}; p.start(); // handles
//   q.put(x); x = q.get()                         q.put(x); order x = q.get();
//   q.get(timeout=1)  # raises queue.Empty        std::optional<order> x = q.get(1s); // nullopt
//   q.task_done(); q.join()                       q.task_done(); q.join();
//   (queue.Queue 3.13) q.shutdown()               q.shutdown(); catch (tandem::shut_down_error&)
//   q.close(); q.join_thread()  # flush feeder    q.close(); q.join_thread(); // nothing to flush
//   p.kill()                                      p.kill();
//
// Items: a trivially copyable type (receipt, std::uint64_t) travels as its bytes; any other type
// (order, with a string and a vector) is serialized through its CAF inspect overload.

#include <tandem/error.hpp>
#include <tandem/mp/joinable_queue.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/queue.hpp>
#include <tandem/runtime.hpp>

#include "check.hpp"

#include <caf/meta/type_name.hpp>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace mp = tandem::mp;

namespace {

// -- the items --------------------------------------------------------------------------------

/// An order: serialized into the queue (it holds a string and a vector).
struct order {
  std::uint64_t id = 0;
  std::string customer;
  std::vector<std::uint32_t> item_cents;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order& x) {
  return f(caf::meta::type_name("order"), x.id, x.customer, x.item_cents);
}

/// A receipt: trivially copyable, so it travels as its bytes.
struct receipt {
  std::uint32_t cashier = 0;
  std::uint64_t order_id = 0;
  std::uint64_t total_cents = 0;
};

// Order `i` of shop `shop`: a pure function, so the main process knows the expected totals.
order make_order(std::uint32_t shop, std::uint64_t i) {
  order o;
  o.id = std::uint64_t{shop} * 1'000'000 + i;
  o.customer = "customer-" + std::to_string((i * 7 + shop) % 97);
  for (std::uint64_t k = 0; k < 1 + (i + shop) % 5; ++k)
    o.item_cents.push_back(static_cast<std::uint32_t>(99 + (i * 31 + k * 17 + shop) % 5000));
  return o;
}

std::uint64_t total_of(const order& o) {
  std::uint64_t sum = 0;
  for (auto c : o.item_cents) sum += c;
  return sum;
}

// -- process targets --------------------------------------------------------------------------

// Puts its orders, then returns: the process exits right after its last put.
void shop(std::uint32_t id, std::uint64_t n, mp::joinable_queue<order> orders) {
  for (std::uint64_t i = 0; i < n; ++i) orders.put(make_order(id, i)); // blocks while full
}

// Takes orders until the queue is shut down and empty.
void cashier(std::uint32_t id, mp::joinable_queue<order> orders, mp::queue<receipt> receipts) {
  for (;;) {
    order o;
    try {
      o = orders.get();
    } catch (const tandem::shut_down_error&) {
      return; // no more orders, ever
    }
    receipts.put(receipt{id, o.id, total_of(o)});
    orders.task_done(); // after the receipt: join() waits for the work, not for the get()
  }
}

// Puts `n` numbers and exits at once. With Python's multiprocessing.Queue, put() hands the item
// to a feeder thread, and the child must let it flush before it exits; here put() returns once
// the item is in shared memory, and close()/join_thread() have nothing left to do.
void burst(std::uint64_t n, mp::queue<std::uint64_t> q) {
  for (std::uint64_t i = 1; i <= n; ++i) q.put(i);
  q.close();
  q.join_thread();
}

/// What a worker of section 3 reports per job.
struct done_job {
  std::uint32_t worker = 0;
  std::uint64_t job = 0;
};

void slow_worker(std::uint32_t id, mp::queue<std::uint64_t> jobs, mp::queue<done_job> done) {
  for (;;) {
    std::uint64_t job = 0;
    try {
      job = jobs.get();
    } catch (const tandem::shut_down_error&) {
      return;
    }
    std::this_thread::sleep_for(1ms); // the work takes a while
    done.put(done_job{id, job});
  }
}

// -- the sections -----------------------------------------------------------------------------

void shops_and_cashiers() {
  std::printf("1. three shops, three cashiers, a joinable queue of at most 8 orders\n");
  constexpr std::uint32_t shops = 3;
  constexpr std::uint32_t cashiers = 3;
  constexpr std::uint64_t per_shop = 2000;
  mp::joinable_queue<order> orders{8}; // bounded: shops wait while the cashiers are behind
  mp::queue<receipt> receipts;         // unbounded (by items): 1 MiB of 24-byte receipts

  std::vector<mp::process> procs;
  for (std::uint32_t id = 1; id <= cashiers; ++id)
    procs.emplace_back(mp::process::options{.name = "cashier-" + std::to_string(id)}, cashier, id,
                       orders, receipts); // copies of the handles: the main process keeps its own
  for (std::uint32_t id = 1; id <= shops; ++id)
    procs.emplace_back(mp::process::options{.name = "shop-" + std::to_string(id)}, shop, id,
                       per_shop, orders);
  auto t0 = std::chrono::steady_clock::now();
  for (auto& p : procs) p.start();

  for (std::size_t i = cashiers; i < procs.size(); ++i) procs[i].join(); // the shops are done
  orders.join(); // every order was taken *and* reported done with task_done()
  auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::size_t waiting = receipts.qsize();
  std::printf("   join() returned after %.2f s: %zu receipts wait for the main process, %zu "
              "unfinished tasks\n",
              elapsed, waiting, orders.unfinished_tasks());
  example::check(waiting == shops * per_shop, "join() returns when every order is done");
  example::check(orders.unfinished_tasks() == 0, "no task is left unfinished");

  orders.shutdown(); // the cashiers' get() throws shut_down_error: they leave
  for (std::size_t i = 0; i < cashiers; ++i) procs[i].join();
  bool all_zero = std::all_of(procs.begin(), procs.end(),
                              [](const mp::process& p) { return p.exitcode() == 0; });
  example::check(all_zero, "every shop and cashier exits with 0");

  std::vector<std::uint64_t> per_cashier(cashiers + 1);
  std::set<std::uint64_t> seen;
  std::uint64_t total = 0;
  while (auto r = receipts.get(0s)) {
    ++per_cashier[r->cashier];
    seen.insert(r->order_id);
    total += r->total_cents;
  }
  std::uint64_t expected = 0;
  for (std::uint32_t s = 1; s <= shops; ++s)
    for (std::uint64_t i = 0; i < per_shop; ++i) expected += total_of(make_order(s, i));
  std::printf("   receipts per cashier:");
  for (std::uint32_t id = 1; id <= cashiers; ++id)
    std::printf(" %" PRIu64, per_cashier[static_cast<std::size_t>(id)]);
  std::printf("; total %" PRIu64 ".%02" PRIu64 " (expected %" PRIu64 ".%02" PRIu64 ")\n",
              total / 100, total % 100, expected / 100, expected % 100);
  example::check(seen.size() == shops * per_shop, "every order got exactly one receipt");
  example::check(total == expected, "the receipts add up to the orders' exact total");

  try {
    orders.put(make_order(9, 0));
    example::check(false, "put after shutdown throws");
  } catch (const tandem::shut_down_error&) {
    std::printf("   put() after shutdown(): shut_down_error\n");
  }
}

void exit_right_after_put() {
  std::printf("\n2. a producer exits right after put(): nothing is lost\n");
  constexpr std::uint64_t n = 10'000;
  mp::queue<std::uint64_t> q;
  mp::process producer{{.name = "burst"}, burst, n, q};
  producer.start();
  producer.join(); // the producer is gone before anyone took an item
  std::printf("   the producer exited with %d; %zu items wait in the queue\n",
              producer.exitcode().value_or(-1), q.qsize());
  example::check(producer.exitcode() == 0 && q.qsize() == n,
                 "every item put by a process that has exited is in the queue");
  std::uint64_t sum = 0;
  while (auto x = q.get(0s)) sum += *x;
  example::check(sum == n * (n + 1) / 2, "every item arrives intact");
}

void killed_consumer() {
  std::printf("\n3. a consumer killed mid-stream does not wedge the queue\n");
  constexpr std::uint64_t n = 600;
  constexpr std::uint32_t workers = 3;
  mp::queue<std::uint64_t> jobs;
  mp::queue<done_job> done;
  for (std::uint64_t j = 0; j < n; ++j) jobs.put(j);
  jobs.shutdown(); // no more jobs: the workers drain the queue, then get() throws

  std::vector<mp::process> procs;
  for (std::uint32_t id = 1; id <= workers; ++id)
    procs.emplace_back(mp::process::options{.name = "worker-" + std::to_string(id)}, slow_worker,
                       id, jobs, done);
  for (auto& p : procs) p.start();

  std::vector<done_job> results;
  while (results.size() < n / 5) {
    auto r = done.get(10s);
    if (!r) break;
    results.push_back(*r);
  }
  example::check(results.size() == n / 5, "the workers make progress");
  procs[0].kill(); // wherever it is: working, in get(), or in put()
  procs[0].join();
  auto victim_done = static_cast<std::size_t>(std::count_if(
      results.begin(), results.end(), [](const done_job& d) { return d.worker == 1; }));
  std::printf("   killed %s after %zu of its jobs: exit code %d\n", procs[0].name().c_str(),
              victim_done, procs[0].exitcode().value_or(0));

  bool finished = true;
  for (std::size_t i = 1; i < procs.size(); ++i) finished = procs[i].join(30s) && finished;
  while (auto r = done.get(0s)) results.push_back(*r);
  std::set<std::uint64_t> distinct;
  for (const auto& r : results) distinct.insert(r.job);
  std::size_t lost = n - distinct.size();
  std::printf("   the others finished: %zu of %" PRIu64 " jobs done, %zu lost with the killed "
              "worker (the job it held), %zu left in the queue\n",
              distinct.size(), n, lost, jobs.qsize());
  example::check(finished && procs[1].exitcode() == 0 && procs[2].exitcode() == 0,
                 "the other workers finish and exit normally");
  example::check(procs[0].exitcode() == -SIGKILL, "kill() gives -9");
  example::check(distinct.size() == results.size(), "no job was done twice");
  example::check(lost <= 1 && jobs.empty(),
                 "only the job the killed worker held is lost, every other one is done");
}

} // namespace

int main(int argc, char** argv) {
  // First thing in main: a child process is this program again, and turns into its target here.
  tandem::runtime rt{argc, argv};
  std::setvbuf(stdout, nullptr, _IOLBF, 0); // parent and children share stdout: keep lines whole

  shops_and_cashiers();
  exit_right_after_put();
  killed_consumer();
  return example::exit_status();
}
