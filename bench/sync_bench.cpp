// Uncontended synchronisation primitives: tandem's beside the standard library's.
//
// One iteration is one acquire+release (or set+wait+clear) by a single thread: the cost every
// caller pays when nobody else holds the primitive. The process has already started a thread
// (see support/bench_main.cpp). The figure is the thread's CPU time (Google Benchmark's default):
// all the work happens in the measuring thread, and on a small, busy machine wall time would add
// whatever time the scheduler gave to other processes.
#include <benchmark/benchmark.h>

#include <condition_variable>
#include <mutex>
#include <semaphore>

// tandem's side of a pair is built only once its header exists, so the suite always builds.
#if __has_include(<tandem/lock.hpp>)
#include <tandem/lock.hpp>
#define TANDEM_BENCH_LOCK 1
#endif
#if __has_include(<tandem/rlock.hpp>)
#include <tandem/rlock.hpp>
#define TANDEM_BENCH_RLOCK 1
#endif
#if __has_include(<tandem/semaphore.hpp>)
#include <tandem/semaphore.hpp>
#define TANDEM_BENCH_SEMAPHORE 1
#endif
#if __has_include(<tandem/event.hpp>)
#include <tandem/event.hpp>
#define TANDEM_BENCH_EVENT 1
#endif

namespace {

// -- lock ---------------------------------------------------------------------------------------

void lock_std_mutex(benchmark::State& state) {
  std::mutex sut;
  for (auto _ : state) {
    sut.lock();
    sut.unlock();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(lock_std_mutex)->Name("lock/std_mutex");

#ifdef TANDEM_BENCH_LOCK
// Python's spelling, acquire()/release(), is what tandem's users write.
void lock_tandem(benchmark::State& state) {
  tandem::lock sut;
  for (auto _ : state) {
    benchmark::DoNotOptimize(sut.acquire());
    sut.release();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(lock_tandem)->Name("lock/tandem");
#endif

// -- rlock --------------------------------------------------------------------------------------

void rlock_std_recursive_mutex(benchmark::State& state) {
  std::recursive_mutex sut;
  for (auto _ : state) {
    sut.lock();
    sut.unlock();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(rlock_std_recursive_mutex)->Name("rlock/std_recursive_mutex");

#ifdef TANDEM_BENCH_RLOCK
void rlock_tandem(benchmark::State& state) {
  tandem::rlock sut;
  for (auto _ : state) {
    benchmark::DoNotOptimize(sut.acquire());
    sut.release();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(rlock_tandem)->Name("rlock/tandem");
#endif

// -- semaphore ----------------------------------------------------------------------------------

void semaphore_std_counting_semaphore(benchmark::State& state) {
  std::counting_semaphore<> sut{1};
  for (auto _ : state) {
    sut.acquire();
    sut.release();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(semaphore_std_counting_semaphore)->Name("semaphore/std_counting_semaphore");

#ifdef TANDEM_BENCH_SEMAPHORE
void semaphore_tandem(benchmark::State& state) {
  tandem::semaphore sut{1};
  for (auto _ : state) {
    benchmark::DoNotOptimize(sut.acquire());
    sut.release();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(semaphore_tandem)->Name("semaphore/tandem");
#endif

// -- event --------------------------------------------------------------------------------------

// The baseline event: a flag under a std::mutex with a std::condition_variable, the way
// threading.Event is built on a Condition. set() notifies after the unlock (the cheaper variant).
class mutex_condvar_event {
public:
  void set() {
    {
      std::lock_guard lk{mtx_};
      flag_ = true;
    }
    cv_.notify_all();
  }

  void clear() {
    std::lock_guard lk{mtx_};
    flag_ = false;
  }

  bool wait() {
    std::unique_lock lk{mtx_};
    cv_.wait(lk, [this] { return flag_; });
    return true;
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool flag_ = false; // guarded by mtx_
};

void event_std_mutex_condvar(benchmark::State& state) {
  mutex_condvar_event sut;
  for (auto _ : state) {
    sut.set();
    benchmark::DoNotOptimize(sut.wait());
    sut.clear();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(event_std_mutex_condvar)->Name("event/std_mutex_condvar");

#ifdef TANDEM_BENCH_EVENT
void event_tandem(benchmark::State& state) {
  tandem::event sut;
  for (auto _ : state) {
    sut.set();
    benchmark::DoNotOptimize(sut.wait());
    sut.clear();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(event_tandem)->Name("event/tandem");
#endif

} // namespace
