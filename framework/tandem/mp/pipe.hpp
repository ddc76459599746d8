// tandem::mp::pipe: Python's `multiprocessing.Pipe(duplex)`, a pair of connected connections.
//
//   auto [a, b] = tandem::mp::pipe();             // duplex: both ends send and receive
//   auto [reader, writer] = tandem::mp::pipe(false); // reader only receives, writer only sends
//   writer.send(std::vector<int>{1, 2, 3});          // objects, with tandem::framework
//   auto v = reader.recv<std::vector<int>>();
//
// Both kinds are a socketpair(AF_UNIX, SOCK_SEQPACKET) with 1 MiB kernel buffers (where the
// kernel allows): each message up to 64 KiB is one record, received in one system call, and
// larger ones go through shared memory (see connection.hpp). A one-way pipe's socket is shut down
// in the unused directions and, as in Python, the first connection is the read end and the
// second the write end. Both descriptors are close-on-exec. Throws tandem::error with the errno
// when the descriptors cannot be created (EMFILE, ENFILE).
#pragma once

#include <tandem/mp/connection.hpp>

#include <utility>

namespace tandem::mp {

/// A connected pair of connections; see the file comment.
std::pair<connection, connection> pipe(bool duplex = true);

} // namespace tandem::mp
