// Per-thread state with tandem::local<T> (Python's threading.local).
//
// A small server handles each request in its own thread. Deep inside, a log() helper wants to
// prefix every line with the request id and the user, but passing a context parameter through
// every function in between is tedious. A tandem::local<context> is one object whose value is
// different in every thread: each handler sets its own context once, and log() reads the
// context of whichever thread calls it.
//
// Each thread's value is built on its first use in that thread (a copy of the initial value given
// to the constructor) and destroyed when that thread ends.
//
//   Python                                  tandem
//   ctx = threading.local()                 tandem::local<context> ctx;
//   ctx.request_id = "r-1"                  ctx->request_id = "r-1";
//   print(ctx.request_id)                   std::printf("%s", ctx->request_id.c_str());

#include <tandem/local.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include "check.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<int> contexts_alive{0};

struct context {
  std::string request_id = "-";
  std::string user = "anonymous";
  std::vector<std::string> log; // what was logged for this request

  context() { ++contexts_alive; }
  context(const context& other) : request_id(other.request_id), user(other.user), log(other.log) {
    ++contexts_alive;
  }
  context& operator=(const context&) = default;
  ~context() { --contexts_alive; }
};

// The initial value each thread starts from.
tandem::local<context> current{context{}};

// Deep in the call stack: no context parameter, yet each thread logs its own request.
void log(const std::string& what) {
  auto line = "[" + current->request_id + " " + current->user + "] " + what;
  current->log.push_back(line);
  std::printf("   %s\n", line.c_str());
}

void load_profile() {
  log("loading profile");
  // A database query: the other handlers run meanwhile, so their lines interleave with ours.
  std::this_thread::sleep_for(std::chrono::milliseconds{5});
}
void render_page() {
  load_profile();
  log("rendering page");
}

struct request {
  std::string id;
  std::string user;
};

std::atomic<int> mixed_up{0};

// A request handler: sets this thread's context, then calls code that relies on it.
void handle(request r) {
  example::check(current->request_id == "-", "a new thread starts from the initial value");
  current->request_id = r.id;
  current->user = r.user;
  render_page();
  log("done");
  // Every line logged in this thread carries this thread's request, whatever the others did.
  for (const auto& line : current->log)
    if (line.find(r.id) == std::string::npos) ++mixed_up;
  example::check(current->log.size() == 3, "each request logs its own three lines");
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};

  std::printf("1. four requests, four threads, one tandem::local<context>\n");
  current->request_id = "main"; // the main thread's own value
  int alive_before = contexts_alive.load();

  std::vector<tandem::thread> handlers;
  const request requests[] = {
      {"r-1", "ada"}, {"r-2", "grace"}, {"r-3", "linus"}, {"r-4", "barbara"}};
  for (const auto& r : requests)
    handlers.emplace_back(tandem::thread::options{.name = "handler-" + r.id}, handle, r);
  for (auto& h : handlers) h.start();
  for (auto& h : handlers) h.join();

  std::printf("\n2. after the threads end\n");
  std::printf("   main thread's request id is still '%s'; its log has %zu lines\n",
              current->request_id.c_str(), current->log.size());
  example::check(current->request_id == "main" && current->log.empty(),
                 "other threads never touched the main thread's value");
  example::check(mixed_up.load() == 0, "no thread saw another thread's context");
  std::printf("   context objects alive: %d before the handlers (the initial value and main's), %d "
              "after they ended\n",
              alive_before, contexts_alive.load());
  example::check(contexts_alive.load() == alive_before,
                 "each thread's value was destroyed when its thread ended");
  return example::exit_status();
}
