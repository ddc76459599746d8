// A dict and a list in a tandem::mp::manager, shared by unrelated processes (Python's
// multiprocessing.Manager, without its server process).
//
// The main process creates a named manager and fills a list of jobs. Three worker programs are
// started with posix_spawn: fresh programs that share no memory and no descriptors with it, and
// find the manager by its name alone. Each takes jobs off the list (pop is atomic: no job is
// taken twice), counts the words of each, and records the count in the dict under the job's
// name, plus its own tally with setdefault. The main process then reads consistent snapshots.
//
//   Python                                     tandem
//   m = Manager(); d = m.dict(); l = m.list()   auto m = mp::manager::create("name");
//                                               auto d = m.dict<std::string, std::int64_t>("d");
//                                               auto l = m.list<std::string>("l");
//   (other program) BaseManager(...).connect()  auto m = mp::manager::attach("name");
//   d[k] = v; d[k]; d.get(k, 0)                 d.set(k, v); d.get(k); d.get(k, 0);
//   d.setdefault(k, 0); d.pop(k); d.items()     d.setdefault(k, 0); d.pop(k); d.items();
//   l.append(x); l.pop(0); l[1:3]; l.sort()     l.append(x); l.pop(0); l.slice(1, 3); l.sort();
//   KeyError, IndexError                        tandem::key_error, tandem::index_error

#include <tandem/error.hpp>
#include <tandem/mp/manager.hpp>

#include "check.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;
namespace mp = tandem::mp;

namespace {

constexpr int workers = 3;

const std::vector<std::string> texts = {
    "the quick brown fox jumps over the lazy dog",
    "a manager holds typed containers in one named segment",
    "every operation is atomic and a killed writer never tears a container",
    "processes with no common ancestor attach by name",
    "pop takes a job off the list exactly once",
    "snapshots of keys values and items are consistent",
    "shared memory without a server process",
    "python's manager proxies every call through a socket",
    "this one does not",
};

std::size_t words(const std::string& s) {
  std::istringstream in{s};
  std::string w;
  std::size_t n = 0;
  while (in >> w) ++n;
  return n;
}

// The worker program: attach by name, take jobs until none is left.
int worker(const std::string& name, const std::string& me) {
  auto m = mp::manager::attach(name);
  auto jobs = m.list<std::string>("jobs");
  auto counts = m.dict<std::string, std::int64_t>("counts");
  auto done_by = m.dict<std::string, std::int64_t>("done_by");
  done_by.setdefault(me, 0);
  for (;;) {
    std::string job;
    try {
      job = jobs.pop(0);
    } catch (const tandem::index_error&) { // the list is empty
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{5}); // the "work": lets others take turns
    counts.set(job, static_cast<std::int64_t>(words(job)));
    done_by.set(me, done_by.get(me) + 1); // only this worker writes its own key
  }
  return 0;
}

pid_t spawn_worker(const std::string& name, int index) {
  std::string self = "/proc/self/exe";
  std::string flag = "--worker";
  std::string me = "worker-" + std::to_string(index);
  std::vector<char*> argv{self.data(), flag.data(), const_cast<char*>(name.c_str()), me.data(),
                          nullptr};
  pid_t pid = 0;
  if (::posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return -1;
  return pid;
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--worker") == 0) return worker(argv[2], argv[3]);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  const std::string name = "tandem-example-manager-" + std::to_string(::getpid());
  auto m = mp::manager::create(name);
  auto jobs = m.list<std::string>("jobs");
  auto counts = m.dict<std::string, std::int64_t>("counts");
  jobs.extend(texts);
  std::printf("manager %s: %zu jobs for %d unrelated worker programs\n", name.c_str(), jobs.size(),
              workers);

  std::vector<pid_t> pids;
  for (int i = 0; i < workers; ++i) pids.push_back(spawn_worker(name, i));
  bool all_ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    all_ok &= pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0;
  }
  example::check(all_ok, "every worker program exited with 0");

  auto done_by = m.dict<std::string, std::int64_t>("done_by");
  std::int64_t total_jobs = 0;
  for (const auto& [who, n] : done_by.items()) {
    std::printf("  %s took %lld jobs\n", who.c_str(), static_cast<long long>(n));
    total_jobs += n;
  }
  example::check(jobs.size() == 0, "the list of jobs is empty");
  example::check(counts.size() == texts.size(), "every job has a count");
  example::check(total_jobs == static_cast<std::int64_t>(texts.size()),
                 "no job was taken twice or lost");
  bool right = true;
  for (const auto& t : texts) right &= counts.get(t, -1) == static_cast<std::int64_t>(words(t));
  example::check(right, "every count is right");

  std::printf("\nPython's errors: key_error and index_error (both value_errors):\n");
  try {
    counts.get("no such job");
    example::check(false, "a missing key throws");
  } catch (const tandem::key_error& e) {
    std::printf("  counts.get(missing): %s\n", e.what());
  }
  jobs.extend(std::vector<std::string>{"delta", "alpha", "charlie", "bravo"});
  jobs.sort();
  auto middle = jobs.slice(1, 3);
  std::printf("  sorted jobs[1:3] = [%s, %s]\n", middle.at(0).c_str(), middle.at(1).c_str());
  example::check(middle == std::vector<std::string>{"bravo", "charlie"}, "slices follow Python");
  try {
    jobs.get(10);
    example::check(false, "an index out of range throws");
  } catch (const tandem::index_error& e) {
    std::printf("  jobs.get(10): %s\n", e.what());
  }

  mp::manager::unlink(name);
  return example::exit_status();
}
