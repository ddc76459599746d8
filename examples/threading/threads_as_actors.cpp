// Threads as actors: a tandem thread has a mailbox with Queue semantics and a caf::actor address.
// Plain code sends to it like a queue; CAF actors send, request and monitor it like any actor.
#include <tandem/tandem.hpp>

#include "check.hpp"

#include <caf/scoped_actor.hpp>
#include <caf/system_messages.hpp>

#include <cstdio>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  tandem::runtime rt{argc, argv}; // owns the caf::actor_system; parses CAF's options

  // A worker that doubles numbers: a handler's return value answers a request; a plain message
  // is just handled. receive() returns false when a second passes without a message.
  std::atomic<int> plain_sum{0};
  tandem::thread worker{
      {.name = "doubler", .mailbox_capacity = 64}, [&] {
        while (tandem::receive(
            [&](int x) {
              plain_sum += x;
              return 2 * x;
            },
            [](const std::string& word) { std::printf("worker got \"%s\"\n", word.c_str()); },
            1s)) {
        }
      }};
  worker.start();

  // From plain code: Queue semantics (this send would block while 64 messages wait).
  worker.send(21);
  worker.send(std::string{"hello"});

  // From CAF: the thread is an ordinary actor.
  caf::scoped_actor self{rt.system()};
  self->monitor(worker.actor());
  int answer = 0;
  self->request(worker.actor(), std::chrono::seconds(5), 4)
      .receive(
          [&](int y) { answer = y; },
          [](caf::error& err) { std::printf("request failed: %s\n", to_string(err).c_str()); });
  std::printf("the worker answered 4 * 2 = %d\n", answer);
  example::check(answer == 8, "a request is answered by the handler's return value");

  // The worker stops after a second without messages; its monitor hears of it.
  bool down = false;
  self->receive([&](caf::down_msg& dm) { down = !dm.reason; },
                caf::after(std::chrono::seconds(10)) >> [] {});
  std::printf("the worker ended normally: %s\n", down ? "yes" : "no");
  example::check(down, "the monitor gets a normal down message when the thread ends");
  example::check(worker.join(5s), "the worker has finished");
  example::check(plain_sum == 25, "the worker handled 21 (plain) and 4 (request)");

  // Its mailbox is shut down now: nothing waits on a thread that no longer reads.
  try {
    worker.send(1);
    example::check(false, "sending to an ended thread throws shut_down_error");
  } catch (const tandem::shut_down_error&) {
    std::printf("sending to the ended worker: shut_down_error\n");
  }
  return example::exit_status();
}
