// Shared memory across processes with tandem::mp::shared_memory and mp::shareable_list (Python's
// multiprocessing.shared_memory.SharedMemory and ShareableList).
//
//   1. a parallel computation over a large buffer with no copies: the main process fills 64 MiB
//      of doubles in a named segment; worker processes attach it by name, each sums its slice
//      in place and writes its partial result into a shareable_list; the main process adds the
//      parts and checks them against a sum of its own
//   2. a list of strings with a per-slot capacity: a write that fits, one that does not (it
//      throws and changes nothing)
//   3. a crashed owner leaks nothing: a process that creates a segment and is killed by SIGKILL
//      has its segment removed by its tracker, so the name stops resolving
//
//   Python                                          tandem
//   shm = SharedMemory(create=True, size=n)         auto shm = mp::shared_memory::create(n);
//   SharedMemory(name)                              mp::shared_memory::attach(name)
//   shm.buf, shm.name, shm.size                     shm.buf(), shm.name(), shm.size()
//   shm.close(); shm.unlink()                       shm.close(); shm.unlink();
//   ShareableList([0.0] * 4)                        mp::shareable_list<double>::create(zeros)
//   ShareableList(name=name)                        mp::shareable_list<double>::attach(name)
//   sl[i] = x                                       sl[i] = x;
//
// Only names cross between the processes: the workers here are started with the default
// (forkserver) method, fresh processes that share no memory with the main one until they attach.

#include <tandem/error.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/process_mailbox.hpp>
#include <tandem/mp/shareable_list.hpp>
#include <tandem/mp/shared_memory.hpp>
#include <tandem/runtime.hpp>

#include "check.hpp"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <numeric>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace mp = tandem::mp;

namespace {

constexpr std::size_t values = std::size_t{8} << 20; // 64 MiB of doubles
constexpr std::size_t workers = 4;

std::span<double> as_doubles(const mp::shared_memory& shm) {
  auto bytes = shm.buf();
  return {reinterpret_cast<double*>(bytes.data()), bytes.size() / sizeof(double)}; // NOLINT
}

// A worker: sums the squares of its slice of the data, in place, into its result slot.
void sum_slice(std::string data_name, std::string results_name, std::size_t index) {
  auto data = mp::shared_memory::attach(data_name);
  auto results = mp::shareable_list<double>::attach(results_name);
  auto all = as_doubles(data);
  std::size_t begin = all.size() * index / workers;
  std::size_t end = all.size() * (index + 1) / workers;
  double sum = 0;
  for (std::size_t i = begin; i < end; ++i) sum += all[i] * all[i];
  results[static_cast<std::ptrdiff_t>(index)] = sum;
}

// The process whose segment outlives it: creates one, reports its name, and waits to be killed.
void create_and_wait() {
  auto shm = mp::shared_memory::create(4096);
  mp::send(shm.name());
  std::this_thread::sleep_for(60s);
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  std::printf("1. a parallel sum over a shared buffer, no copies\n");
  auto data = mp::shared_memory::create(values * sizeof(double));
  auto all = as_doubles(data);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<double>(i % 1000) / 1000.0;
  auto results = mp::shareable_list<double>::create(std::vector<double>(workers, 0.0));
  std::printf("  %zu MiB in segment %s; results in %s\n", data.size() >> 20, data.name().c_str(),
              results.shm().name().c_str());

  auto start = std::chrono::steady_clock::now();
  std::vector<mp::process> ps;
  for (std::size_t i = 0; i < workers; ++i)
    ps.emplace_back(sum_slice, data.name(), results.shm().name(), i);
  for (auto& p : ps) p.start();
  for (auto& p : ps) p.join();
  double parallel = 0;
  for (std::size_t i = 0; i < workers; ++i) parallel += results[static_cast<std::ptrdiff_t>(i)];
  auto took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
  double serial = std::transform_reduce(all.begin(), all.end(), 0.0, std::plus<>{},
                                        [](double x) { return x * x; });
  std::printf("  %zu workers: sum of squares %.6f in %.1f ms (start included); one process: %.6f\n",
              workers, parallel, took.count(), serial);
  bool all_ok = true;
  for (auto& p : ps) all_ok &= p.exitcode() == 0;
  example::check(all_ok, "every worker exited with 0");
  example::check(std::abs(parallel - serial) <= 1e-9 * serial,
                 "the parts add up to the sum of one process");
  data.unlink();
  results.shm().unlink();

  std::printf("\n2. strings with a per-slot capacity\n");
  auto names = mp::shareable_list<std::string>::create({"howdy", "hi"}, {.capacity = 16});
  names[1] = "hello";
  std::printf("  capacity %zu bytes; names[1] = \"%s\"\n", names.capacity(),
              std::string{names.get(1)}.c_str());
  try {
    names[1] = "far too many bytes for a slot";
    example::check(false, "a string longer than the capacity throws");
  } catch (const tandem::value_error& e) {
    std::printf("  too long: value_error (%s)\n", e.what());
  }
  example::check(names.get(1) == "hello", "a failed write leaves the slot unchanged");
  names.shm().unlink();

  std::printf("\n3. a killed owner leaks nothing\n");
  mp::process owner{create_and_wait};
  owner.start();
  auto name = owner.recv<std::string>();
  auto seen = mp::shared_memory::attach(name); // the segment exists while its owner lives
  std::printf("  %s made %s (%zu bytes); killing it with SIGKILL\n", owner.name().c_str(),
              name.c_str(), seen.size());
  seen.close();
  owner.kill();
  owner.join();
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    try {
      mp::shared_memory::attach(name).close();
      std::this_thread::sleep_for(10ms);
    } catch (const tandem::segment_error& e) {
      gone = e.errno_value() == ENOENT;
      if (!gone) break;
    }
  }
  std::printf("  exit code %d; the tracker removed the segment: %s\n", owner.exitcode().value_or(0),
              gone ? "yes" : "no");
  example::check(gone, "the tracker removes a killed owner's segment");
  return example::exit_status();
}
