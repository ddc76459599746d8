// Processes with tandem::mp::process (Python's multiprocessing.Process): starting, joining, exit
// codes, terminate and kill, daemon children, and the start methods.
//
//   Python                                        tandem
//   if __name__ == "__main__":                    tandem::runtime rt{argc, argv};  // first in main
//   p = Process(target=f, args=(1, "x"))          tandem::mp::process p{f, 1, std::string{"x"}};
//   p.start(); p.join(timeout=1)                  p.start(); bool done = p.join(1s);
//   p.exitcode  # None, 0, 1, n, -signal          std::optional<int> code = p.exitcode();
//   sys.exit(3)                                   tandem::mp::exit(3);
//   p.terminate(); p.kill(); p.close()            p.terminate(); p.kill(); p.close();
//   p.sentinel  # for connection.wait             int fd = p.sentinel();           // a pidfd
//   Process(target=f, daemon=True)                tandem::mp::process d{{.daemon = true}, f};
//   current_process().name, parent_process()      current_process().name(), parent_process()
//   set_start_method("fork")                      set_start_method(start_method::fork)
//
// The target runs in another process, so it is a plain function (or a captureless lambda) and
// its arguments are copied into the child: with the default start method they are serialized
// (numbers, strings, containers, any type with a CAF inspect overload).

#include <tandem/mp/process.hpp>
#include <tandem/runtime.hpp>

#include "check.hpp"

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

using namespace std::chrono_literals;
namespace mp = tandem::mp;

namespace {

void greet(int n, std::string who) {
  auto parent = mp::parent_process();
  std::printf("  [%s, pid %d] hello %s #%d, my parent is %s (pid %d)\n",
              mp::current_process().name().c_str(), static_cast<int>(getpid()), who.c_str(), n,
              parent ? parent->name().c_str() : "nobody", parent ? *parent->pid() : 0);
  std::fflush(stdout);
}

void fail_with_exception() {
  throw std::runtime_error{"the input file is corrupt"};
}

void exit_with(int code) {
  mp::exit(code);
}

void sleep_forever() {
  for (;;) std::this_thread::sleep_for(1h);
}

void crash() {
  std::raise(SIGSEGV);
}

const char* describe(std::optional<int> code) {
  static thread_local char text[64];
  if (!code) return "still running";
  if (*code < 0)
    std::snprintf(text, sizeof text, "%d (killed by signal %d)", *code, -*code);
  else
    std::snprintf(text, sizeof text, "%d", *code);
  return text;
}

} // namespace

int main(int argc, char** argv) {
  // First thing in main: with the spawn and forkserver start methods the child is this program
  // again, and it turns into its target here instead of running the rest of main.
  tandem::runtime rt{argc, argv};
  std::setvbuf(stdout, nullptr, _IOLBF, 0); // parent and children share stdout: keep lines whole

  std::printf("this is %s, pid %d, %zu usable CPUs, start method %s\n",
              mp::current_process().name().c_str(), static_cast<int>(getpid()), mp::cpu_count(),
              std::string{mp::to_string(mp::get_start_method())}.c_str());
  example::check(!mp::parent_process(), "the main process has no parent process");

  std::printf("\n1. start and join\n");
  mp::process p{greet, 1, std::string{"world"}};
  example::check(!p.exitcode() && !p.pid(), "before start(): no pid, no exit code");
  p.start();
  p.join();
  std::printf("  %s exited with %s\n", p.name().c_str(), describe(p.exitcode()));
  example::check(p.exitcode() == 0, "a target that returns exits with 0");

  std::printf("\n2. exit codes\n");
  mp::process failing{fail_with_exception};
  mp::process exiting{exit_with, 3};
  mp::process crashing{crash};
  for (auto* q : {&failing, &exiting, &crashing}) q->start();
  for (auto* q : {&failing, &exiting, &crashing}) {
    q->join();
    std::printf("  %s: exit code %s\n", q->name().c_str(), describe(q->exitcode()));
  }
  example::check(failing.exitcode() == 1, "an uncaught exception gives exit code 1");
  example::check(exiting.exitcode() == 3, "mp::exit(3) gives exit code 3");
  example::check(crashing.exitcode() == -SIGSEGV, "a segfault gives -11");

  std::printf("\n3. join with a timeout, terminate, kill\n");
  mp::process sleeper{{.name = "sleeper"}, sleep_forever};
  sleeper.start();
  bool finished = sleeper.join(100ms);
  std::printf("  join(100ms) -> %s; is_alive() -> %s\n", finished ? "true" : "false",
              sleeper.is_alive() ? "true" : "false");
  example::check(!finished && sleeper.is_alive(), "a sleeping child outlives join(100ms)");
  sleeper.terminate();
  sleeper.join();
  std::printf("  after terminate(): exit code %s\n", describe(sleeper.exitcode()));
  example::check(sleeper.exitcode() == -SIGTERM, "terminate() gives -15");
  mp::process holdout{sleep_forever};
  holdout.start();
  holdout.kill();
  holdout.join();
  std::printf("  after kill(): exit code %s\n", describe(holdout.exitcode()));
  example::check(holdout.exitcode() == -SIGKILL, "kill() gives -9");

  std::printf("\n4. the sentinel: a descriptor that becomes readable when the child exits\n");
  mp::process quick{exit_with, 0};
  quick.start();
  pollfd pfd{quick.sentinel(), POLLIN, 0};
  int ready = ::poll(&pfd, 1, 10'000);
  std::printf("  poll(sentinel) -> %d, is_alive() -> %s\n", ready,
              quick.is_alive() ? "true" : "false");
  example::check(ready == 1 && !quick.is_alive(), "the sentinel is readable once the child ends");
  quick.close();
  try {
    (void)quick.is_alive();
    example::check(false, "a closed process refuses to be used");
  } catch (const tandem::value_error& e) {
    std::printf("  after close(): %s\n", e.what());
  }

  std::printf("\n5. daemon children are terminated when the program ends\n");
  mp::process daemon{{.name = "watchdog", .daemon = true}, sleep_forever};
  daemon.start();
  std::printf("  %s (daemon) runs: %zu active children\n", daemon.name().c_str(),
              mp::active_children().size());
  example::check(mp::active_children().size() == 1, "the daemon is the only active child");

  std::printf("\n6. every start method\n");
  // The runtime's actor system runs scheduler threads, so fork must be told that forking this
  // multi-threaded program is fine: the child only calls greet(), which takes no lock another
  // thread could hold.
  for (auto method : mp::get_all_start_methods()) {
    mp::process q{{.method = method, .allow_threads = method == mp::start_method::fork},
                  greet,
                  2,
                  std::string{mp::to_string(method)}};
    auto started = std::chrono::steady_clock::now();
    q.start();
    q.join();
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    std::printf("  %-10s exit code %s, start+join %lld us\n",
                std::string{mp::to_string(method)}.c_str(), describe(q.exitcode()),
                static_cast<long long>(us));
    example::check(q.exitcode() == 0, "every start method runs the target");
  }

  // The runtime's shutdown (at the end of main) terminates the daemon and joins the rest.
  return example::exit_status();
}
