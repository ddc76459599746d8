// Actor round trips: a CAF event-based actor pings a tandem thread through the thread's
// caf::actor and the thread replies, beside the same pinger against a CAF event-based ponger in
// the same actor_system.
//
// The pinger is shared: it sends an int, waits for it to come back and sends the next one, for
// `round_trips` trips per iteration; only the party that answers differs. The figure is round
// trips per second (manual time from the pinger's spawn until its last reply). CAF runs with its
// default scheduler (one worker per core); nothing is pinned.
#include <support/harness.hpp>

#include <benchmark/benchmark.h>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/blocking_actor.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <stop_token>

#if __has_include(<tandem/mailbox.hpp>) && __has_include(<tandem/runtime.hpp>) && \
  __has_include(<tandem/thread.hpp>)
#include <tandem/detail/caf.hpp>
#include <tandem/mailbox.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>
#define TANDEM_BENCH_THREAD_ACTOR 1
#endif

namespace {

constexpr int round_trips = 10'000; // per iteration: tens of milliseconds

// The baselines run with the scheduler settings tandem::runtime gives CAF, so both sides of a
// pair share one configuration (see detail::apply_runtime_defaults).
void configure_like_tandem(caf::actor_system_config& cfg) {
#ifdef TANDEM_BENCH_THREAD_ACTOR
  tandem::detail::apply_runtime_defaults(cfg);
#else
  (void)cfg;
#endif
}

using done_signal = std::shared_ptr<std::promise<void>>;

// Function-based and spawned with arguments: Debian's CAF 0.17.6 crashes when a function-based
// actor is spawned without any.
caf::behavior pinger(caf::event_based_actor* self, caf::actor target, int trips, done_signal done) {
  self->send(target, 0);
  return {
      [=](int n) {
        if (n + 1 == trips) {
          done->set_value();
          self->quit();
          return;
        }
        self->send(target, n + 1);
      },
  };
}

// Runs `trips` round trips against `target` per iteration and reports round trips per second.
void measure_round_trips(benchmark::State& state, caf::actor_system& sys,
                         const caf::actor& target) {
  for (auto _ : state) {
    auto done = std::make_shared<std::promise<void>>();
    auto finished = done->get_future();
    auto start = std::chrono::steady_clock::now();
    sys.spawn(pinger, target, round_trips, done);
    finished.wait();
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  state.SetItemsProcessed(state.iterations() * round_trips);
}

// -- baseline: two event-based CAF actors -------------------------------------------------------

// Class-based (see pinger). Returning the int answers whoever sent it (a new async message),
// the same idiom as the tandem thread's receive handler below.
class ponger : public caf::event_based_actor {
public:
  explicit ponger(caf::actor_config& cfg) : caf::event_based_actor(cfg) {}

  caf::behavior make_behavior() override {
    return {
        [](int n) { return n; },
    };
  }
};

void actor_round_trip_caf(benchmark::State& state) {
  caf::actor_system_config cfg;
  configure_like_tandem(cfg);
  caf::actor_system sys{cfg};
  auto target = sys.spawn<ponger>();
  measure_round_trips(state, sys, target);
  caf::anon_send_exit(target, caf::exit_reason::user_shutdown);
}
BENCHMARK(actor_round_trip_caf)->Name("actor_round_trip/caf_actors")->UseManualTime();

// -- second baseline: a CAF blocking actor in its own thread ------------------------------------

// CAF's own way to answer from a dedicated thread: a detached blocking actor. Its round trip
// crosses threads as the tandem thread's does, so the report sets it beside tandem as well.
// A `false` ends it. Spawned with an (unused) argument, see pinger.
void blocking_ponger(caf::blocking_actor* self, int /*unused*/) {
  bool running = true;
  self->receive_while(running)([](int n) { return n; }, [&](bool) { running = false; });
}

void actor_round_trip_caf_blocking(benchmark::State& state) {
  caf::actor_system_config cfg;
  configure_like_tandem(cfg);
  caf::actor_system sys{cfg};
  auto target = sys.spawn<caf::detached>(blocking_ponger, 0);
  measure_round_trips(state, sys, target);
  caf::anon_send(target, false);
}
BENCHMARK(actor_round_trip_caf_blocking)
    ->Name("actor_round_trip/caf_blocking_actor")
    ->UseManualTime();

#ifdef TANDEM_BENCH_THREAD_ACTOR
// -- tandem: a thread answering through its mailbox ---------------------------------------------

// A tandem::thread answers from its mailbox; CAF actors reach it through thread::actor(), whose
// enqueue puts messages straight into the mailbox, and its answers go back through the CAF
// worker that fed it.
void actor_round_trip_tandem(benchmark::State& state) {
  tandem::runtime rt;
  tandem::thread answerer{[](std::stop_token st) {
    caf::behavior answer{[](int n) { return n; }}; // built once, as the mailbox header advises
    auto& box = tandem::current_thread().mailbox();
    while (box.receive(st, answer)) {
    }
  }};
  answerer.start();
  measure_round_trips(state, rt.system(), answerer.actor());
  answerer.request_stop();
  answerer.join();
}
BENCHMARK(actor_round_trip_tandem)->Name("actor_round_trip/tandem")->UseManualTime();
#endif

} // namespace
