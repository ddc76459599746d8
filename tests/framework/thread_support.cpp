// The child-process runner of the thread tests, and the scenarios children run.
//
// A test that must watch a whole process (what happens when main returns, what reaches stderr)
// runs this executable again with TANDEM_THREAD_CHILD=<scenario>. A static initializer below
// sees the variable before doctest's main runs, runs the scenario and calls std::exit with its
// result: std::exit is what returning from main does (exit handlers, then static destructors).

#include "framework/thread_support.hpp"

#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include <caf/scoped_actor.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace tandem::test {

namespace {

using namespace std::chrono_literals;

void say(std::string_view text) {
  // write(2), not stdio: it reaches the pipe at once, whatever the process does next.
  auto rc = ::write(STDOUT_FILENO, text.data(), text.size());
  (void)rc;
}

// Returning from main must join a non-daemon thread still running. The sleep is the work the
// thread does; the parent checks its output arrived.
int exit_joins_non_daemon() {
  tandem::thread worker{[] {
    std::this_thread::sleep_for(300ms);
    say("worker finished\n");
  }};
  worker.start();
  say("main returns\n");
  return 0;
}

// Also a thread started by another thread, whose handle is gone, with its starter finished.
int exit_joins_orphans() {
  tandem::thread starter{[] {
    tandem::thread orphan{[] {
      std::this_thread::sleep_for(300ms);
      say("orphan finished\n");
    }};
    orphan.start();
  }};
  starter.start();
  starter.join();
  say("main returns\n");
  return 0;
}

// A daemon thread that never ends (it ignores its stop request) does not hold up exit.
int exit_skips_daemon() {
  tandem::thread daemon{{.daemon = true}, [] {
                          for (;;) std::this_thread::sleep_for(1h);
                        }};
  daemon.start();
  say("main returns\n");
  return 0;
}

// Daemon threads get a stop request at exit. A static object built before the first thread
// starts is destroyed after the exit handling (as the header promises), so it can wait for the
// daemon to report.
int exit_stops_daemon() {
  static std::atomic<bool> saw_stop{false};
  struct witness {
    ~witness() {
      for (int i = 0; i < 500 && !saw_stop; ++i)
        std::this_thread::sleep_for(10ms); // bounded: the daemon may not run in time
      say(saw_stop ? "daemon saw the stop request\n" : "no stop request\n");
    }
  };
  static witness w;
  tandem::thread daemon{{.daemon = true}, [](std::stop_token st) {
                          while (!st.stop_requested()) std::this_thread::sleep_for(1ms);
                          saw_stop = true;
                        }};
  daemon.start();
  return 0;
}

// A non-daemon thread that joins the main thread does not hold up exit: the main thread counts
// as finished before the others are joined (Python's _shutdown order).
int exit_main_joinable() {
  tandem::thread waiter{[] {
    tandem::main_thread().join();
    say("main thread joined\n");
  }};
  waiter.start();
  return 0;
}

int excepthook_no_thread() {
  tandem::default_excepthook({std::make_exception_ptr(std::runtime_error("lonely")), nullptr});
  return 0;
}

int excepthook_default() {
  tandem::thread failing{{.name = "failing-worker"},
                         [] { throw std::runtime_error("boom in the worker"); }};
  failing.start();
  say(failing.join(10s) ? "joined\n" : "join timed out\n");
  return 0;
}

int excepthook_not_std() {
  tandem::thread failing{{.name = "int-thrower"}, [] { throw 42; }};
  failing.start();
  say(failing.join(10s) ? "joined\n" : "join timed out\n");
  return 0;
}

int excepthook_raises() {
  tandem::set_excepthook(
      [](const tandem::excepthook_args&) { throw std::logic_error("the hook itself failed"); });
  tandem::thread failing{[] { throw std::runtime_error("boom"); }};
  failing.start();
  say(failing.join(10s) ? "joined\n" : "join timed out\n");
  return 0;
}

// A program that never constructs a runtime gets the default one, and still exits cleanly.
int default_runtime_exit() {
  auto& rt = tandem::runtime::current();
  {
    caf::scoped_actor self{rt.system()};
    self->send(self, 42);
    bool got = false;
    self->receive([&](int x) { got = x == 42; });
    say(got ? "actor system works\n" : "no message\n");
  }
  tandem::thread worker{[] {
    std::this_thread::sleep_for(100ms);
    say("worker finished\n");
  }};
  worker.start();
  return 0;
}

int run_scenario(std::string_view name) {
  static const std::map<std::string_view, int (*)()> scenarios{
      {"exit_joins_non_daemon", exit_joins_non_daemon},
      {"exit_joins_orphans", exit_joins_orphans},
      {"exit_skips_daemon", exit_skips_daemon},
      {"exit_stops_daemon", exit_stops_daemon},
      {"exit_main_joinable", exit_main_joinable},
      {"excepthook_no_thread", excepthook_no_thread},
      {"excepthook_default", excepthook_default},
      {"excepthook_not_std", excepthook_not_std},
      {"excepthook_raises", excepthook_raises},
      {"default_runtime_exit", default_runtime_exit},
  };
  auto i = scenarios.find(name);
  if (i == scenarios.end()) {
    std::fprintf(stderr, "unknown child scenario %.*s\n", static_cast<int>(name.size()),
                 name.data());
    return 99;
  }
  return i->second();
}

const int child_dispatch = [] {
  if (const char* scenario = std::getenv("TANDEM_THREAD_CHILD")) std::exit(run_scenario(scenario));
  return 0;
}();

} // namespace

child_result run_child(const std::string& scenario, std::chrono::steady_clock::duration limit) {
  child_result result;
  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "TANDEM_THREAD_CHILD=", 20) != 0) env_strings.emplace_back(*e);
  env_strings.push_back("TANDEM_THREAD_CHILD=" + scenario);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe";
  std::vector<char*> argv{exe.data(), nullptr};

  auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ::close(out[0]);
    ::close(err[0]);
    throw std::runtime_error("posix_spawn failed");
  }

  auto deadline = start + limit;
  bool killed = false;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      ::kill(pid, SIGKILL);
      killed = true;
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      auto got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(got));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.elapsed = std::chrono::steady_clock::now() - start;
  if (killed)
    result.status = -1000;
  else if (WIFEXITED(status))
    result.status = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    result.status = -WTERMSIG(status);
  return result;
}

} // namespace tandem::test
