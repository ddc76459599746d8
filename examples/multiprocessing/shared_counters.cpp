// Shared counters and buffers with tandem::mp::value and mp::array (Python's multiprocessing
// Value and Array).
//
//   1. a lost update, shown: four processes add to one value with get() and set(), each of which
//      takes the lock, but the read-modify-write between them does not hold it, so increments
//      vanish
//   2. fixed with get_lock(): the same work holding the lock around each increment ends exact
//   3. the lock-free way: fetch_add on a value whose T is a lock-free atomic needs no lock at all
//   4. a shared buffer: workers fill slices of one array in place; the main process reads them
//
//   Python                                   tandem
//   v = Value("q", 0)                        auto v = mp::value<std::int64_t>::create();
//   v.value += 1  # not atomic               v.set(v.get() + 1);          // not atomic either
//   with v.get_lock(): v.value += 1          std::scoped_lock g{v.get_lock()}; v.get_obj() += 1;
//   a = Array("d", 1000)                     auto a = mp::array<double>::create(1000);
//   a[i] = x; a[10:20]                       a.set(i, x); a.slice(10, 20);

#include <tandem/mp/array.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/value.hpp>
#include <tandem/runtime.hpp>

#include "check.hpp"

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <vector>

namespace mp = tandem::mp;

namespace {

constexpr int workers = 4;
constexpr int increments = 50'000;

// Python's `v.value += 1`: a locked read, then a locked write, with nothing held in between.
void racy_add(mp::value<std::int64_t> v) {
  for (int i = 0; i < increments; ++i) v.set(v.get() + 1);
}

void locked_add(mp::value<std::int64_t> v) {
  for (int i = 0; i < increments; ++i) {
    std::scoped_lock guard{v.get_lock()};
    v.get_obj() += 1;
  }
}

void atomic_add(mp::value<std::int64_t> v) {
  for (int i = 0; i < increments; ++i) v.fetch_add(1);
}

// Fills slice `index` of the array with index + 1, in place.
void fill_slice(mp::array<double> a, int index) {
  std::size_t begin = a.size() * static_cast<std::size_t>(index) / workers;
  std::size_t end = a.size() * static_cast<std::size_t>(index + 1) / workers;
  auto items = a.span();
  for (std::size_t i = begin; i < end; ++i) items[i] = index + 1;
}

template <class Target, class... Args>
void run_workers(Target target, const Args&... args) {
  std::vector<mp::process> ps;
  for (int i = 0; i < workers; ++i) ps.emplace_back(target, args...);
  for (auto& p : ps) p.start();
  for (auto& p : ps) p.join();
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::int64_t expected = std::int64_t{workers} * increments;

  std::printf("1. %d processes x %d increments with get() and set()\n", workers, increments);
  auto racy = mp::value<std::int64_t>::create();
  run_workers(racy_add, racy);
  std::printf("  expected %lld, got %lld: %lld increments lost\n", static_cast<long long>(expected),
              static_cast<long long>(racy.get()), static_cast<long long>(expected - racy.get()));
  example::check(racy.get() <= expected, "a racy count never exceeds the true count");

  std::printf("\n2. the same, holding get_lock() around each increment\n");
  auto locked = mp::value<std::int64_t>::create();
  run_workers(locked_add, locked);
  std::printf("  expected %lld, got %lld\n", static_cast<long long>(expected),
              static_cast<long long>(locked.get()));
  example::check(locked.get() == expected, "increments under get_lock() are never lost");

  std::printf("\n3. fetch_add, lock-free\n");
  auto atomic = mp::value<std::int64_t>::create();
  run_workers(atomic_add, atomic);
  std::printf("  expected %lld, got %lld\n", static_cast<long long>(expected),
              static_cast<long long>(atomic.atomic_load()));
  example::check(atomic.atomic_load() == expected, "atomic increments are never lost");

  std::printf("\n4. a shared buffer filled in place by %d processes\n", workers);
  auto buffer = mp::array<double>::create(1'000'000);
  std::vector<mp::process> ps;
  for (int i = 0; i < workers; ++i) ps.emplace_back(fill_slice, buffer, i);
  for (auto& p : ps) p.start();
  for (auto& p : ps) p.join();
  std::printf("  a[0] = %.0f, a[-1] = %.0f, a[499999:500002] =", buffer.get(0), buffer.get(-1));
  for (double x : buffer.slice(499'999, 500'002)) std::printf(" %.0f", x);
  std::printf("\n");
  bool filled = true;
  for (int i = 0; i < workers; ++i)
    filled &= buffer.get(static_cast<std::ptrdiff_t>(buffer.size() * static_cast<std::size_t>(i) /
                                                     workers)) == i + 1;
  example::check(filled, "every slice holds its worker's number");
  try {
    buffer.get(1'000'000);
    example::check(false, "an index past the end throws");
  } catch (const tandem::value_error& e) {
    std::printf("  a[1000000]: value_error (%s)\n", e.what());
  }
  return example::exit_status();
}
