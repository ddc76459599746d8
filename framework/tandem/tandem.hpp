// Umbrella header: everything in namespaces tandem (Python's threading and queue) and tandem::mp
// (multiprocessing).
#pragma once

#include <tandem/error.hpp>
#include <tandem/timeout.hpp>

// threading: primitives
#include <tandem/barrier.hpp>
#include <tandem/bounded_semaphore.hpp>
#include <tandem/condition.hpp>
#include <tandem/event.hpp>
#include <tandem/lock.hpp>
#include <tandem/rlock.hpp>
#include <tandem/semaphore.hpp>

// queue
#include <tandem/lifo_queue.hpp>
#include <tandem/priority_queue.hpp>
#include <tandem/queue.hpp>
#include <tandem/simple_queue.hpp>

// threading: threads as actors
#include <tandem/local.hpp>
#include <tandem/mailbox.hpp>
#include <tandem/receive.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>
#include <tandem/timer.hpp>

// multiprocessing
#include <tandem/mp/array.hpp>
#include <tandem/mp/barrier.hpp>
#include <tandem/mp/bounded_semaphore.hpp>
#include <tandem/mp/condition.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/event.hpp>
#include <tandem/mp/pipe.hpp>
#include <tandem/mp/joinable_queue.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/manager.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/queue.hpp>
#include <tandem/mp/rlock.hpp>
#include <tandem/mp/semaphore.hpp>
#include <tandem/mp/shareable_list.hpp>
#include <tandem/mp/shared_memory.hpp>
#include <tandem/mp/simple_queue.hpp>
#include <tandem/mp/value.hpp>
#include <tandem/mp/wait.hpp>
