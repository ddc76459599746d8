// The queue contracts (tests/conformance/queue_bodies.hpp) run against the cross-process queues
// within one process, with threads as parties. tests/processes runs them with processes.
#include "conformance/queue_bodies.hpp"

#include <tandem/mp/joinable_queue.hpp>
#include <tandem/mp/queue.hpp>
#include <tandem/mp/simple_queue.hpp>

using tandem::test::subject;

TYPE_TO_STRING_AS("mp joinable_queue of int", subject<tandem::mp::joinable_queue<int>>);
TYPE_TO_STRING_AS("mp queue of int", subject<tandem::mp::queue<int>>);
TYPE_TO_STRING_AS("mp simple_queue of int", subject<tandem::mp::simple_queue<int>>);

TANDEM_QUEUE_CONTRACT(subject<tandem::mp::joinable_queue<int>>);

TANDEM_SIMPLE_QUEUE_CONTRACT(subject<tandem::mp::simple_queue<int>>,
                             subject<tandem::mp::queue<int>>,
                             subject<tandem::mp::joinable_queue<int>>);
