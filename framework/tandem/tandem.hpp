// Umbrella header: everything in namespaces tandem (Python's threading and queue) and tandem::mp
// (multiprocessing).
#pragma once

#include <tandem/error.hpp>
#include <tandem/timeout.hpp>
