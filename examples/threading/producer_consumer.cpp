// Producers and consumers with tandem::queue (Python's queue.Queue, 3.13 shutdown included).
//
// A producer thread puts jobs into a bounded queue; three consumer threads take them out and do
// the work. The bound gives backpressure: when consumers fall behind, put() blocks instead of
// letting the backlog grow without limit. task_done()/join() let the producer side wait until
// every job is *finished*, not merely taken; shutdown() then tells consumers there is no more
// work, so they leave their loop.
//
//   Python                                   tandem
//   q = queue.Queue(maxsize=4)               tandem::queue<job> q{4};
//   q.put(x); x = q.get()                    q.put(x); auto x = q.get();
//   q.put(x, timeout=0.02)  # queue.Full     bool ok = q.put(x, 20ms);             // false
//   q.get(timeout=0.02)     # queue.Empty    std::optional<T> x = q.get(20ms);     // nullopt
//   q.put_nowait(x) / q.get_nowait()         q.put_nowait(x) / q.get_nowait()  //
//   full_error/empty_error q.task_done(); q.join()                  q.task_done(); q.join();
//   q.shutdown(); except queue.ShutDown      q.shutdown(); catch (tandem::shut_down_error&)
//   queue.PriorityQueue                      tandem::priority_queue<T> (least first, as Python)

#include <tandem/error.hpp>
#include <tandem/priority_queue.hpp>
#include <tandem/queue.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include "check.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct job {
  int id = 0;
  std::string text;
};

// The "work": count the words of a text.
int count_words(const std::string& text) {
  int words = 0;
  bool in_word = false;
  for (char c : text) {
    bool letter = c != ' ';
    words += letter && !in_word ? 1 : 0;
    in_word = letter;
  }
  return words;
}

void jobs_and_workers() {
  std::printf("1. one producer, three consumers, a queue of at most 4 jobs\n");
  constexpr int n_jobs = 20;
  tandem::queue<job> jobs{4};
  std::atomic<int> words{0};
  std::atomic<int> finished{0};

  tandem::thread producer{{.name = "producer"}, [&] {
                            for (int i = 1; i <= n_jobs; ++i) {
                              std::string text;
                              for (int w = 0; w < i; ++w) text += "word ";
                              if (jobs.full())
                                std::printf(
                                    "   producer: the queue is full, job %d waits for room\n", i);
                              jobs.put(job{i, text}); // blocks while 4 jobs are already waiting
                            }
                            std::printf("   producer: all %d jobs queued\n", n_jobs);
                          }};

  auto consume = [&] {
    auto me = tandem::current_thread().name();
    int mine = 0;
    for (;;) {
      job j;
      try {
        j = jobs.get();
      } catch (const tandem::shut_down_error&) {
        break; // shutdown() was called and the queue is empty: no more work, ever
      }
      words += count_words(j.text);
      std::this_thread::sleep_for(2ms); // the work takes a while
      ++finished;
      ++mine;
      jobs.task_done(); // after the work: join() waits for this, not for get()
    }
    std::printf("   %s: leaving after %d jobs\n", me.c_str(), mine);
  };
  std::vector<tandem::thread> consumers;
  for (int i = 0; i < 3; ++i)
    consumers.emplace_back(tandem::thread::options{.name = "consumer-" + std::to_string(i + 1)},
                           consume);

  producer.start();
  for (auto& c : consumers) c.start();

  producer.join();
  jobs.join(); // every job put has been marked done: the work is finished, not just taken
  std::printf("   join() returned: %d of %d jobs finished, %d words counted\n", finished.load(),
              n_jobs, words.load());
  example::check(finished.load() == n_jobs, "join() returns only when every job is done");
  example::check(words.load() == n_jobs * (n_jobs + 1) / 2, "every job was counted once");

  jobs.shutdown(); // consumers blocked in get() wake with shut_down_error
  for (auto& c : consumers) c.join();
  try {
    jobs.put(job{99, "late"});
    example::check(false, "put after shutdown throws");
  } catch (const tandem::shut_down_error&) {
    std::printf("   put() after shutdown(): shut_down_error\n");
  }
}

void timeouts_and_nowait() {
  std::printf("\n2. full and empty: timeouts and the _nowait forms\n");
  tandem::queue<int> q{1};
  q.put_nowait(1);
  try {
    q.put_nowait(2);
    example::check(false, "put_nowait on a full queue throws");
  } catch (const tandem::full_error&) {
    std::printf("   put_nowait on a full queue: full_error\n");
  }
  bool put = q.put(2, 20ms);
  std::printf("   put(2, 20ms) on a full queue: %s\n", put ? "true" : "false (timed out)");
  example::check(!put && q.full() && q.qsize() == 1, "a timed put on a full queue times out");

  example::check(q.get_nowait() == 1, "get_nowait takes the item");
  try {
    q.get_nowait();
    example::check(false, "get_nowait on an empty queue throws");
  } catch (const tandem::empty_error&) {
    std::printf("   get_nowait on an empty queue: empty_error\n");
  }
  std::optional<int> got = q.get(20ms);
  std::printf("   get(20ms) on an empty queue: %s\n", got ? "a value" : "nullopt (timed out)");
  example::check(!got && q.empty(), "a timed get on an empty queue times out");
}

void immediate_shutdown() {
  std::printf("\n3. shutdown(true): stop now, drop what is queued\n");
  tandem::queue<int> q;
  for (int i = 0; i < 5; ++i) q.put(i);
  q.shutdown(true); // the 5 items are dropped (and count as done for join())
  std::printf("   after shutdown(true): qsize() = %zu\n", q.qsize());
  example::check(q.qsize() == 0, "an immediate shutdown drops the items");
  example::check(q.join(0s), "dropped items count as done, so join() does not block");
  try {
    q.get();
    example::check(false, "get on a shut-down empty queue throws");
  } catch (const tandem::shut_down_error&) {
    std::printf("   get(): shut_down_error at once\n");
  }
}

void priorities() {
  std::printf("\n4. priority_queue: the least element first, as Python's PriorityQueue\n");
  tandem::priority_queue<std::pair<int, std::string>> tickets;
  tickets.put({3, "update the docs"});
  tickets.put({1, "the site is down"});
  tickets.put({2, "a customer cannot log in"});
  std::vector<int> order;
  while (!tickets.empty()) {
    auto [priority, what] = tickets.get();
    std::printf("   priority %d: %s\n", priority, what.c_str());
    order.push_back(priority);
  }
  example::check(order == std::vector<int>{1, 2, 3}, "priorities come out least first");
}

} // namespace

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv};
  jobs_and_workers();
  timeouts_and_nowait();
  immediate_shutdown();
  priorities();
  return example::exit_status();
}
