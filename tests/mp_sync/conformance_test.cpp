// The lock, rlock, condition, event, semaphore and barrier contracts (tests/conformance/) against
// the cross-process primitives, with processes as parties (the forked flavour: every object lives
// in a MAP_SHARED mapping, every party is a fork() child).
#include "processes/queue_flavour.hpp"

#include "conformance/barrier_bodies.hpp"
#include "conformance/condition_bodies.hpp"
#include "conformance/event_bodies.hpp"
#include "conformance/lock_bodies.hpp"
#include "conformance/rlock_bodies.hpp"
#include "conformance/semaphore_bodies.hpp"

#include <tandem/mp/barrier.hpp>
#include <tandem/mp/bounded_semaphore.hpp>
#include <tandem/mp/condition.hpp>
#include <tandem/mp/event.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/rlock.hpp>
#include <tandem/mp/semaphore.hpp>

using tandem::test::forked;
using tandem::test::subject;

using mp_condition_over_lock =
    tandem::test::condition_over<tandem::mp::lock, tandem::mp::condition>;
using mp_condition_over_rlock =
    tandem::test::condition_over<tandem::mp::rlock, tandem::mp::condition>;

TYPE_TO_STRING_AS("mp lock across processes", subject<tandem::mp::lock, forked>);
TYPE_TO_STRING_AS("mp rlock across processes", subject<tandem::mp::rlock, forked>);
TYPE_TO_STRING_AS("mp condition across processes", subject<tandem::mp::condition, forked>);
TYPE_TO_STRING_AS("mp condition over an mp lock across processes",
                  subject<mp_condition_over_lock, forked>);
TYPE_TO_STRING_AS("mp condition over an mp rlock across processes",
                  subject<mp_condition_over_rlock, forked>);
TYPE_TO_STRING_AS("mp event across processes", subject<tandem::mp::event, forked>);
TYPE_TO_STRING_AS("mp semaphore across processes", subject<tandem::mp::semaphore, forked>);
TYPE_TO_STRING_AS("mp bounded_semaphore across processes",
                  subject<tandem::mp::bounded_semaphore, forked>);
TYPE_TO_STRING_AS("mp barrier across processes", subject<tandem::mp::barrier, forked>);

TANDEM_BASE_LOCK_CONTRACT(subject<tandem::mp::lock, forked>, subject<tandem::mp::rlock, forked>,
                          subject<tandem::mp::condition, forked>,
                          subject<mp_condition_over_lock, forked>,
                          subject<mp_condition_over_rlock, forked>);
TANDEM_PLAIN_LOCK_CONTRACT(subject<tandem::mp::lock, forked>,
                           subject<mp_condition_over_lock, forked>);
TANDEM_RLOCK_CONTRACT(subject<tandem::mp::rlock, forked>, subject<tandem::mp::condition, forked>,
                      subject<mp_condition_over_rlock, forked>);
TANDEM_CONDITION_CONTRACT(subject<tandem::mp::condition, forked>,
                          subject<mp_condition_over_lock, forked>,
                          subject<mp_condition_over_rlock, forked>);
TANDEM_EVENT_CONTRACT(subject<tandem::mp::event, forked>);
TANDEM_SEMAPHORE_CONTRACT(subject<tandem::mp::semaphore, forked>,
                          subject<tandem::mp::bounded_semaphore, forked>);
TANDEM_UNBOUNDED_SEMAPHORE_CONTRACT(subject<tandem::mp::semaphore, forked>);
TANDEM_BOUNDED_SEMAPHORE_CONTRACT(subject<tandem::mp::bounded_semaphore, forked>);
TANDEM_BARRIER_CONTRACT(subject<tandem::mp::barrier, forked>);
