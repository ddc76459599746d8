// The queue contracts (tests/conformance/queue_bodies.hpp) run against the
// in-process queues.
#include "conformance/queue_bodies.hpp"

#include <tandem/lifo_queue.hpp>
#include <tandem/priority_queue.hpp>
#include <tandem/queue.hpp>
#include <tandem/simple_queue.hpp>

#include <string>

using tandem::test::subject;

TYPE_TO_STRING_AS("queue of int", subject<tandem::queue<int>>);
TYPE_TO_STRING_AS("queue of string", subject<tandem::queue<std::string>>);
TYPE_TO_STRING_AS("lifo_queue of int", subject<tandem::lifo_queue<int>>);
TYPE_TO_STRING_AS("lifo_queue of string", subject<tandem::lifo_queue<std::string>>);
TYPE_TO_STRING_AS("priority_queue of int", subject<tandem::priority_queue<int>>);
TYPE_TO_STRING_AS("priority_queue of string", subject<tandem::priority_queue<std::string>>);
TYPE_TO_STRING_AS("simple_queue of int", subject<tandem::simple_queue<int>>);
TYPE_TO_STRING_AS("simple_queue of string", subject<tandem::simple_queue<std::string>>);

TANDEM_QUEUE_CONTRACT(subject<tandem::queue<int>>, subject<tandem::queue<std::string>>,
                      subject<tandem::lifo_queue<int>>, subject<tandem::lifo_queue<std::string>>,
                      subject<tandem::priority_queue<int>>,
                      subject<tandem::priority_queue<std::string>>);

TANDEM_SIMPLE_QUEUE_CONTRACT(subject<tandem::simple_queue<int>>,
                             subject<tandem::simple_queue<std::string>>,
                             subject<tandem::queue<int>>, subject<tandem::queue<std::string>>);
