// Cross-process shared state against its baselines, in the same run:
//
//   shm_create    a 4 KiB segment created, attached by name, both closed, unlinked:
//                 mp::shared_memory vs bare shm_open + ftruncate + mmap (Python: SharedMemory)
//   mplock        an uncontended acquire + release: mp::lock vs a robust process-shared
//                 pthread mutex
//   mplock_2proc  two processes incrementing one shared counter under the lock: mp::lock vs a
//                 plain process-shared pthread mutex
//   mpvalue_2proc two processes incrementing an mp::value<std::int64_t> under its get_lock(), vs
//                 the same work under a plain process-shared pthread mutex (Python: Value)
//   manager_dict  a child process setting and getting integer keys: mp::manager's dict vs a
//                 Boost.Interprocess map in a managed segment under an interprocess_mutex
//                 (Python: a Manager's dict)
//
// The two-process pairs start their workers before the clock and release them through a gate;
// the figure is operations (increments, set+get pairs) per second of manual time.
#include <benchmark/benchmark.h>

#include "support/process_support.hpp"

#include <tandem/error.hpp>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#if __has_include(<tandem/mp/lock.hpp>)
#include <tandem/mp/lock.hpp>
#define TANDEM_BENCH_MP_LOCK 1
#endif
#if __has_include(<tandem/mp/value.hpp>)
#include <tandem/mp/value.hpp>
#define TANDEM_BENCH_MP_VALUE 1
#endif
#if __has_include(<tandem/mp/manager.hpp>)
#include <tandem/mp/manager.hpp>
#define TANDEM_BENCH_MANAGER 1
#endif
#if __has_include(<tandem/mp/shared_memory.hpp>)
#include <tandem/mp/shared_memory.hpp>
#define TANDEM_BENCH_SHARED_MEMORY 1
#endif

namespace {

using namespace tandem_bench;
using clock_type = std::chrono::steady_clock;

// An anonymous shared mapping holding one T, for the pthread baselines.
template <class T>
class shared_cell {
public:
  shared_cell() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    ptr_ = ::new (p) T{};
  }
  ~shared_cell() {
    ptr_->~T();
    ::munmap(ptr_, sizeof(T));
  }
  shared_cell(const shared_cell&) = delete;
  shared_cell& operator=(const shared_cell&) = delete;
  T* operator->() const noexcept { return ptr_; }
  T& operator*() const noexcept { return *ptr_; }

private:
  T* ptr_ = nullptr;
};

// A process-shared pthread mutex, robust or not, and the counter it guards.
struct pthread_counter {
  pthread_mutex_t mutex;
  std::int64_t value = 0;
  void init(bool robust) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (robust) pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&mutex, &a);
    pthread_mutexattr_destroy(&a);
  }
};

// Runs `work(i)` in `parties` processes forked before the clock and released together; returns
// the seconds from the release until every process has exited.
double run_parties(int parties, const std::function<void(int)>& work) {
  gate go;
  std::vector<pid_t> pids;
  for (int i = 0; i < parties; ++i)
    pids.push_back(fork_peer([&, i] {
      go.wait();
      work(i);
    }));
  auto start = clock_type::now();
  for (int i = 0; i < parties; ++i) go.open();
  bool ok = true;
  for (auto pid : pids) ok &= reap(pid);
  double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  if (!ok) die("a worker process failed");
  return seconds;
}

// -- shm_create ------------------------------------------------------------------------------

constexpr std::size_t segment_size = 4096;

void shm_create_posix(benchmark::State& state) {
  const std::string name = "/tandem-bench-shm-" + std::to_string(::getpid());
  for (auto _ : state) {
    int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ::ftruncate(fd, segment_size) != 0) die("shm_open");
    void* a = ::mmap(nullptr, segment_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    int fd2 = ::shm_open(name.c_str(), O_RDWR, 0);
    if (fd2 < 0) die("shm_open attach");
    void* b = ::mmap(nullptr, segment_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
    ::close(fd2);
    if (a == MAP_FAILED || b == MAP_FAILED) die("mmap");
    static_cast<char*>(a)[0] = 1;
    benchmark::DoNotOptimize(static_cast<char*>(b)[0]);
    ::munmap(a, segment_size);
    ::munmap(b, segment_size);
    ::shm_unlink(name.c_str());
  }
}
BENCHMARK(shm_create_posix)->Name("shm_create/posix_shm");

#ifdef TANDEM_BENCH_SHARED_MEMORY
void shm_create_tandem(benchmark::State& state) {
  for (auto _ : state) {
    auto shm = tandem::mp::shared_memory::create(segment_size);
    auto other = tandem::mp::shared_memory::attach(shm.name());
    shm.buf()[0] = std::byte{1};
    benchmark::DoNotOptimize(other.buf()[0]);
    other.close();
    shm.close();
    shm.unlink();
  }
}
BENCHMARK(shm_create_tandem)->Name("shm_create/tandem");
#endif

// -- mplock ----------------------------------------------------------------------------------

void mplock_pthread_robust(benchmark::State& state) {
  shared_cell<pthread_counter> c;
  c->init(true);
  for (auto _ : state) {
    pthread_mutex_lock(&c->mutex);
    benchmark::DoNotOptimize(c->value);
    pthread_mutex_unlock(&c->mutex);
  }
}
BENCHMARK(mplock_pthread_robust)->Name("mplock/pthread_robust");

#ifdef TANDEM_BENCH_MP_LOCK
// The lock and the counter it guards, in one shared mapping.
struct mp_counter {
  tandem::mp::lock lock;
  std::int64_t value = 0;
};

void mplock_tandem(benchmark::State& state) {
  shared_cell<mp_counter> c;
  for (auto _ : state) {
    c->lock.acquire();
    benchmark::DoNotOptimize(c->value);
    c->lock.release();
  }
}
BENCHMARK(mplock_tandem)->Name("mplock/tandem");
#endif

// -- two processes incrementing --------------------------------------------------------------

constexpr std::int64_t increments = 200'000; // per process and iteration

void increments_pthread(benchmark::State& state) {
  shared_cell<pthread_counter> c;
  c->init(false);
  for (auto _ : state) {
    c->value = 0;
    double s = run_parties(2, [&](int) {
      for (std::int64_t i = 0; i < increments; ++i) {
        pthread_mutex_lock(&c->mutex);
        ++c->value;
        pthread_mutex_unlock(&c->mutex);
      }
    });
    state.SetIterationTime(s);
    if (c->value != 2 * increments) die("lost increments");
  }
  state.SetItemsProcessed(state.iterations() * 2 * increments);
}
BENCHMARK(increments_pthread)->Name("mplock_2proc/pthread_pshared")->UseManualTime();

#ifdef TANDEM_BENCH_MP_LOCK
void increments_mp_lock(benchmark::State& state) {
  shared_cell<mp_counter> c;
  for (auto _ : state) {
    c->value = 0;
    double s = run_parties(2, [&](int) {
      for (std::int64_t i = 0; i < increments; ++i) {
        c->lock.acquire();
        ++c->value;
        c->lock.release();
      }
    });
    state.SetIterationTime(s);
    if (c->value != 2 * increments) die("lost increments");
  }
  state.SetItemsProcessed(state.iterations() * 2 * increments);
}
BENCHMARK(increments_mp_lock)->Name("mplock_2proc/tandem")->UseManualTime();
#endif
BENCHMARK(increments_pthread)->Name("mpvalue_2proc/pthread_pshared")->UseManualTime();

#ifdef TANDEM_BENCH_MP_VALUE
void increments_mp_value(benchmark::State& state) {
  auto v = tandem::mp::value<std::int64_t>::create();
  for (auto _ : state) {
    v.set(0);
    double s = run_parties(2, [&](int) {
      for (std::int64_t i = 0; i < increments; ++i) {
        std::scoped_lock guard{v.get_lock()};
        v.get_obj() += 1;
      }
    });
    state.SetIterationTime(s);
    if (v.get() != 2 * increments) die("lost increments");
  }
  state.SetItemsProcessed(state.iterations() * 2 * increments);
}
BENCHMARK(increments_mp_value)->Name("mpvalue_2proc/tandem")->UseManualTime();
#endif

// -- manager dict ----------------------------------------------------------------------------

namespace bip = boost::interprocess;
constexpr std::int64_t dict_ops = 100'000; // set+get pairs per iteration
constexpr std::int64_t dict_keys = 1024;

void manager_dict_boost(benchmark::State& state) {
  using value_type = std::pair<const std::int64_t, std::int64_t>;
  using alloc = bip::allocator<value_type, bip::managed_shared_memory::segment_manager>;
  using map = bip::map<std::int64_t, std::int64_t, std::less<>, alloc>;
  const std::string name = "tandem-bench-map-" + std::to_string(::getpid());
  bip::shared_memory_object::remove(name.c_str());
  {
    bip::managed_shared_memory segment{bip::create_only, name.c_str(), 4 << 20};
    auto* m = segment.construct<map>("dict")(segment.get_segment_manager());
    auto* mutex = segment.construct<bip::interprocess_mutex>("mutex")();
    for (auto _ : state) {
      double s = run_parties(1, [&](int) {
        std::int64_t sum = 0;
        for (std::int64_t i = 0; i < dict_ops; ++i) {
          {
            bip::scoped_lock<bip::interprocess_mutex> g{*mutex};
            (*m)[i % dict_keys] = i;
          }
          bip::scoped_lock<bip::interprocess_mutex> g{*mutex};
          sum += m->find(i % dict_keys)->second;
        }
        benchmark::DoNotOptimize(sum);
      });
      state.SetIterationTime(s);
    }
  }
  bip::shared_memory_object::remove(name.c_str());
  state.SetItemsProcessed(state.iterations() * dict_ops);
}
BENCHMARK(manager_dict_boost)->Name("manager_dict/boost_map")->UseManualTime();

#ifdef TANDEM_BENCH_MANAGER
void manager_dict_tandem(benchmark::State& state) {
  const std::string name = "tandem-bench-manager-" + std::to_string(::getpid());
  try {
    tandem::mp::manager::unlink(name);
  } catch (const tandem::error&) {
  }
  {
    auto m = tandem::mp::manager::create(name);
    auto d = m.dict<std::int64_t, std::int64_t>("dict");
    for (auto _ : state) {
      double s = run_parties(1, [&](int) {
        // The child attaches by name, as an unrelated process would.
        auto mine = tandem::mp::manager::attach(name);
        auto dict = mine.dict<std::int64_t, std::int64_t>("dict");
        std::int64_t sum = 0;
        for (std::int64_t i = 0; i < dict_ops; ++i) {
          dict.set(i % dict_keys, i);
          sum += dict.get(i % dict_keys);
        }
        benchmark::DoNotOptimize(sum);
      });
      state.SetIterationTime(s);
    }
    static_cast<void>(d.size());
  }
  tandem::mp::manager::unlink(name);
  state.SetItemsProcessed(state.iterations() * dict_ops);
}
BENCHMARK(manager_dict_tandem)->Name("manager_dict/tandem")->UseManualTime();
#endif

} // namespace
