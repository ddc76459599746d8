// The queue contracts (tests/conformance/queue_bodies.hpp) run against the cross-process queues
// with processes as parties (the forked flavour, tests/processes/queue_flavour.hpp).
#include "processes/queue_flavour.hpp"

#include "conformance/queue_bodies.hpp"

#include <tandem/mp/joinable_queue.hpp>
#include <tandem/mp/queue.hpp>
#include <tandem/mp/simple_queue.hpp>

#include <string>

using tandem::test::forked;
using tandem::test::subject;

TYPE_TO_STRING_AS("mp joinable_queue of int across processes",
                  subject<tandem::mp::joinable_queue<int>, forked>);
TYPE_TO_STRING_AS("mp joinable_queue of string across processes",
                  subject<tandem::mp::joinable_queue<std::string>, forked>);
TYPE_TO_STRING_AS("mp queue of int across processes", subject<tandem::mp::queue<int>, forked>);
TYPE_TO_STRING_AS("mp simple_queue of int across processes",
                  subject<tandem::mp::simple_queue<int>, forked>);
TYPE_TO_STRING_AS("mp simple_queue of string across processes",
                  subject<tandem::mp::simple_queue<std::string>, forked>);

TANDEM_QUEUE_CONTRACT(subject<tandem::mp::joinable_queue<int>, forked>,
                      subject<tandem::mp::joinable_queue<std::string>, forked>);

TANDEM_SIMPLE_QUEUE_CONTRACT(subject<tandem::mp::simple_queue<int>, forked>,
                             subject<tandem::mp::simple_queue<std::string>, forked>,
                             subject<tandem::mp::queue<int>, forked>);
