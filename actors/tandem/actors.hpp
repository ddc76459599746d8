// Umbrella header of tandem::actors: the framework plus CAF's middleman, through which tandem's
// actors (threads, processes, and later the primitive services) are published to other processes
// and machines.
#pragma once

#include <tandem/tandem.hpp>

#include <caf/io/all.hpp>
