// Daemon and non-daemon threads: what happens to running threads when the program ends.
//
// As in Python, the program does not end while a non-daemon thread runs: the runtime joins them
// all, whether or not anyone kept their handle. Daemon threads are background helpers that must
// not keep the program alive; Python abandons them at exit, tandem first sends them a stop request
// through their std::stop_token, so they can end cleanly, and does not wait for them.
//
//   Python                                          tandem
//   Thread(target=f, daemon=True)                   tandem::thread{{.name = "hb", .daemon = true},
//   f} (interpreter exit joins non-daemon threads)     the runtime's shutdown() (also at the end of
//                                                   main) joins them, and stops daemon threads
//
// A target may take a std::stop_token as its first parameter (as with std::jthread); every
// blocking tandem call has an overload taking that token, which returns as soon as a stop is
// requested.
//
// Here main() calls rt.shutdown() itself, so that it can check the result afterwards; returning
// from main does exactly the same when the runtime is destroyed.

#include <tandem/queue.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include "check.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

std::atomic<int> records_written{0};
std::atomic<int> heartbeats{0};
std::atomic<bool> heartbeat_stopped{false};
std::atomic<bool> listener_stopped{false};

// Non-daemon: must finish its work even though main does not wait for it.
void write_report() {
  for (int i = 1; i <= 5; ++i) {
    std::this_thread::sleep_for(40ms); // writing takes a while
    ++records_written;
    std::printf("   [writer] record %d of 5 written\n", i);
  }
}

// Daemon: runs until asked to stop.
void heartbeat(std::stop_token stop) {
  while (!stop.stop_requested()) {
    ++heartbeats;
    std::this_thread::sleep_for(30ms);
  }
  heartbeat_stopped = true;
  std::printf("   [heartbeat] stop requested after %d beats: stopping\n", heartbeats.load());
}

// Daemon: blocked in a queue that nobody ever fills. The stop_token overload of get() returns
// an empty optional as soon as a stop is requested.
void listener(std::stop_token stop, tandem::queue<std::string>* inbox) {
  std::optional<std::string> message = inbox->get(stop);
  listener_stopped = !message.has_value();
  std::printf("   [listener] get() returned %s: stopping\n",
              message ? "a message" : "nothing (stop requested)");
}

// Daemon: ignores stop requests (its target takes no stop token). The program ends anyway and
// abandons it mid-loop, as Python abandons daemon threads: a daemon must not hold anything that
// needs cleaning up. It touches only its own stack.
void obstinate() {
  for (;;) std::this_thread::sleep_for(100ms);
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  tandem::queue<std::string> inbox;

  // The writer's handle goes out of scope at once: the thread keeps running, and the runtime
  // still joins it.
  {
    tandem::thread writer{{.name = "writer"}, write_report};
    writer.start();
    std::printf("started: writer (daemon: %s)\n", writer.daemon() ? "yes" : "no");
  }
  tandem::thread beat{{.name = "heartbeat", .daemon = true}, heartbeat};
  tandem::thread ear{{.name = "listener", .daemon = true}, listener, &inbox};
  tandem::thread mule{{.name = "obstinate", .daemon = true}, obstinate};
  for (auto* t : {&beat, &ear, &mule}) {
    t->start();
    std::printf("started: %s (daemon: %s)\n", t->name().c_str(), t->daemon() ? "yes" : "no");
  }

  std::printf("main is done and joins nobody; the runtime shuts down:\n");
  auto t0 = clock_type::now();
  bool joined = rt.shutdown(10s); // what returning from main does
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0);
  std::printf("shutdown returned after %lld ms: %d of 5 records written; daemons asked to stop: "
              "%s\n",
              static_cast<long long>(took.count()), records_written.load(),
              beat.get_stop_token().stop_requested() && ear.get_stop_token().stop_requested() &&
                      mule.get_stop_token().stop_requested()
                  ? "yes"
                  : "no");
  example::check(joined && records_written.load() == 5, "shutdown waited for the writer");
  example::check(took < 5s, "shutdown did not wait for the daemon threads");
  example::check(beat.get_stop_token().stop_requested() && ear.get_stop_token().stop_requested(),
                 "every daemon thread got a stop request");

  // Not needed in a real program, which would simply return: a moment's wait shows that the
  // daemons that honour their stop token end cleanly, and that the obstinate one is still running.
  example::check(beat.join(5s) && heartbeat_stopped.load(), "the heartbeat stopped on request");
  example::check(ear.join(5s) && listener_stopped.load(), "the listener's blocking get() stopped");
  example::check(mule.is_alive(), "a daemon that ignores the request is left running");
  std::printf("the obstinate daemon is still running; main returns anyway\n");
  return example::exit_status();
}
