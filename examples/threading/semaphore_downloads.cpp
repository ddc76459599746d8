// Limiting concurrency with tandem::semaphore and tandem::bounded_semaphore (Python's
// threading.Semaphore and BoundedSemaphore).
//
// Eight files must be downloaded, but the server allows at most three connections per client.
// One thread per file, and a semaphore holding three permits: a download acquires a permit before
// it connects and releases it when done, so at most three run at any moment; the others wait.
//
// A bounded semaphore also catches a classic bug: releasing more often than acquiring, which
// would silently raise the limit of a plain semaphore.
//
//   Python                                      tandem
//   slots = threading.Semaphore(3)              tandem::semaphore slots{3};
//   with slots: download()                      { std::scoped_lock permit{slots}; download(); }
//   slots.acquire(timeout=0.05)                 slots.acquire(50ms)
//   pool = threading.BoundedSemaphore(2)        tandem::bounded_semaphore pool{2};
//   pool.release()  # once too often: ValueError  pool.release(); // tandem::value_error

#include <tandem/bounded_semaphore.hpp>
#include <tandem/error.hpp>
#include <tandem/runtime.hpp>
#include <tandem/semaphore.hpp>
#include <tandem/thread.hpp>

#include "check.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int max_connections = 3;

struct download_stats {
  std::atomic<int> active{0};
  std::atomic<int> most_active{0};
  std::atomic<long> bytes{0};
};

// A simulated download: holds a connection for a time proportional to the file's size.
void download(tandem::semaphore& connections, download_stats& stats, std::string file,
              long kilobytes) {
  std::scoped_lock permit{connections}; // acquire() here, release() at the end of the scope
  int now = ++stats.active;
  // Remember the highest number of simultaneous downloads ever seen.
  int seen = stats.most_active.load();
  while (now > seen && !stats.most_active.compare_exchange_weak(seen, now)) {
  }
  std::printf("   %-14s start (%d of %d connections in use)\n", file.c_str(), now, max_connections);

  std::this_thread::sleep_for(std::chrono::milliseconds{kilobytes / 10}); // "transferring"

  stats.bytes += kilobytes * 1024;
  --stats.active; // before the permit is released, so `active` never exceeds the permits
  std::printf("   %-14s done, %ld KiB\n", file.c_str(), kilobytes);
}

void downloads() {
  std::printf("1. 8 downloads, at most %d at a time\n", max_connections);
  tandem::semaphore connections{max_connections};
  download_stats stats;
  const std::pair<const char*, long> files[] = {
      {"report.pdf", 400}, {"photo-1.jpg", 250}, {"photo-2.jpg", 300}, {"data.csv", 600},
      {"video.mp4", 900},  {"notes.txt", 50},    {"song.flac", 500},   {"backup.tar", 700},
  };
  long expected_bytes = 0;
  std::vector<tandem::thread> threads;
  for (const auto& [file, kib] : files) {
    threads.emplace_back(tandem::thread::options{.name = file}, download, std::ref(connections),
                         std::ref(stats), std::string{file}, kib);
    expected_bytes += kib * 1024;
  }
  auto t0 = std::chrono::steady_clock::now();
  for (auto& t : threads) t.start();
  for (auto& t : threads) t.join();
  auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("   all done in %.2f s; at most %d downloads ran at once\n", took,
              stats.most_active.load());
  example::check(stats.most_active.load() <= max_connections,
                 "never more concurrent downloads than permits");
  example::check(stats.most_active.load() >= 1, "downloads ran");
  example::check(stats.bytes.load() == expected_bytes, "every file was downloaded");
  example::check(connections.acquire(0s) && connections.acquire(0s) && connections.acquire(0s) &&
                     !connections.acquire(0s),
                 "all permits are back once the downloads are done");
}

void connection_pool() {
  std::printf("\n2. a bounded semaphore guarding a pool of 2 database connections\n");
  tandem::bounded_semaphore pool{2};
  pool.acquire();
  pool.acquire();
  // The pool is empty: a timed acquire gives up and says so.
  bool got = pool.acquire(50ms);
  std::printf("   third acquire(50ms) with both connections out: %s\n",
              got ? "true" : "false (timed out)");
  example::check(!got, "a third connection is refused while two are out");

  pool.release();
  pool.release();
  try {
    pool.release(); // one release too many: with a plain semaphore the pool would now have 3
    example::check(false, "an over-release throws");
  } catch (const tandem::value_error& e) {
    std::printf("   a third release(): value_error: %s\n", e.what());
  }
  example::check(pool.acquire(0s) && pool.acquire(0s) && !pool.acquire(0s),
                 "the over-release did not add a connection");
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  downloads();
  connection_pool();
  return example::exit_status();
}
