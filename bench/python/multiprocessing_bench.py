#!/usr/bin/env python3
"""The work of tandem's cross-process benchmarks, done with Python's multiprocessing module.

Each benchmark does what its C++ pair does (same names, same shapes) and reports seconds per
operation: per item moved through a queue from one process to another, per 64-byte round trip
through a Pipe (both processes pinned to one CPU, or to two), per 1 MiB message through a Pipe,
per process start (until its first message arrived and it was joined), per shared-memory
segment made and removed, per lock acquire+release, per increment of a shared counter by two
processes, per set+get on a Manager dict from a child process. Every figure is the median
of several repeats; the peer process is started before the clock and released through an Event,
as in C++. Prints JSON in threading_bench.py's format.

Usage: multiprocessing_bench.py [--quick] [--filter REGEX]   (REGEX is matched against the names)
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import statistics
import sys
import time


# -- queues: 1 producer process -> 1 consumer process ------------------------------------------


def _produce(q, go, items, size):
    item = bytes(size)
    go.wait()
    put = q.put
    for _ in range(items):
        put(item)


def transfer(items, size, capacity):
    q = mp.Queue(capacity)
    go = mp.Event()
    p = mp.Process(target=_produce, args=(q, go, items, size))
    p.start()
    get = q.get
    start = time.perf_counter()
    go.set()
    for _ in range(items):
        get()
    elapsed = time.perf_counter() - start
    p.join()
    if p.exitcode != 0:
        raise RuntimeError("the producer failed")
    return elapsed, items


def bench_mpqueue_64b(n):
    return transfer(n, 64, 1024)


def bench_mpqueue_64k(n):
    return transfer(n, 64 * 1024, 64)


# -- round trips -------------------------------------------------------------------------------


def _echo(conn, other_end, go, cpu):
    other_end.close()  # a forked child inherits the parent's end too; EOF needs it closed
    os.sched_setaffinity(0, {cpu})
    go.wait()
    recv, send = conn.recv_bytes, conn.send_bytes
    try:
        while True:
            send(recv())
    except EOFError:
        pass


def round_trip(n, peer_cpu):
    if peer_cpu >= len(os.sched_getaffinity(0)):
        return None
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        mine, theirs = mp.Pipe()
        go = mp.Event()
        p = mp.Process(target=_echo, args=(theirs, mine, go, peer_cpu))
        p.start()
        theirs.close()
        message = bytes(64)
        send, recv = mine.send_bytes, mine.recv_bytes
        start = time.perf_counter()
        go.set()
        for _ in range(n):
            send(message)
            recv()
        elapsed = time.perf_counter() - start
        mine.close()
        p.join()
        return elapsed, n
    finally:
        os.sched_setaffinity(0, saved)


def bench_pipe_rt_1cpu(n):
    return round_trip(n, 0)


def bench_pipe_rt_2cpu(n):
    return round_trip(n, 1)


# -- 1 MiB messages ----------------------------------------------------------------------------


def _send_large(conn, other_end, go, count):
    other_end.close()
    message = bytes(1 << 20)
    go.wait()
    for _ in range(count):
        conn.send_bytes(message)
    conn.close()


def bench_pipe_1mib(n):
    reader, writer = mp.Pipe(duplex=False)
    go = mp.Event()
    p = mp.Process(target=_send_large, args=(writer, reader, go, n))
    p.start()
    writer.close()
    buffer = bytearray(1 << 20)
    start = time.perf_counter()
    go.set()
    for _ in range(n):
        reader.recv_bytes_into(buffer)
    elapsed = time.perf_counter() - start
    p.join()
    return elapsed, n


# -- process start -----------------------------------------------------------------------------


def _hello(conn):
    conn.send_bytes(b"started")


def start_until_first_message(n, method):
    ctx = mp.get_context(method)  # None: the default method
    start = time.perf_counter()
    for _ in range(n):
        reader, writer = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_hello, args=(writer,))
        p.start()
        reader.recv_bytes()
        p.join()
        reader.close()
        writer.close()
    return time.perf_counter() - start, n


def bench_spawn_start(n):
    return start_until_first_message(n, "spawn")


def bench_fork_start(n):
    return start_until_first_message(n, "fork")


def bench_default_start(n):
    return start_until_first_message(n, None)


# name: (function, operations per repeat, quick operations per repeat)
# -- shared state --------------------------------------------------------------------------------


def bench_shm_create(n):
    from multiprocessing import shared_memory
    start = time.perf_counter()
    for _ in range(n):
        shm = shared_memory.SharedMemory(create=True, size=4096)
        other = shared_memory.SharedMemory(shm.name)
        shm.buf[0] = 1
        other.buf[0]
        other.close()
        shm.close()
        shm.unlink()
    return time.perf_counter() - start, n


def bench_mplock(n):
    lock = mp.Lock()
    acquire, release = lock.acquire, lock.release
    start = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    return time.perf_counter() - start, n


def _increment(value, lock, go, n):
    go.wait()
    for _ in range(n):
        with lock:
            value.value += 1


def two_processes_incrementing(n, value, lock):
    go = mp.Event()
    workers = [mp.Process(target=_increment, args=(value, lock, go, n // 2)) for _ in range(2)]
    for w in workers:
        w.start()
    start = time.perf_counter()
    go.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if value.value != 2 * (n // 2):
        raise RuntimeError("lost increments")
    return elapsed, 2 * (n // 2)


def bench_mplock_2proc(n):
    return two_processes_incrementing(n, mp.Value("q", 0, lock=False), mp.Lock())


def bench_mpvalue_2proc(n):
    value = mp.Value("q", 0)
    return two_processes_incrementing(n, value, value.get_lock())


def _use_dict(d, go, n, keys):
    go.wait()
    total = 0
    for i in range(n):
        d[i % keys] = i
        total += d[i % keys]


def bench_manager_dict(n):
    with mp.Manager() as manager:
        d = manager.dict()
        go = mp.Event()
        p = mp.Process(target=_use_dict, args=(d, go, n, 1024))
        p.start()
        start = time.perf_counter()
        go.set()
        p.join()
        elapsed = time.perf_counter() - start
        if p.exitcode != 0:
            raise RuntimeError("the child failed")
    return elapsed, n


BENCHMARKS = {
    "mpqueue_64b": (bench_mpqueue_64b, 100_000, 10_000),
    "mpqueue_64k": (bench_mpqueue_64k, 4_000, 400),
    "pipe_rt_1cpu": (bench_pipe_rt_1cpu, 20_000, 2_000),
    "pipe_rt_2cpu": (bench_pipe_rt_2cpu, 20_000, 2_000),
    "pipe_1mib": (bench_pipe_1mib, 1_000, 100),
    "spawn_start": (bench_spawn_start, 20, 5),
    "fork_start": (bench_fork_start, 200, 20),
    "default_start": (bench_default_start, 200, 20),
    "shm_create": (bench_shm_create, 2_000, 200),
    "mplock": (bench_mplock, 1_000_000, 100_000),
    "mplock_2proc": (bench_mplock_2proc, 100_000, 10_000),
    "mpvalue_2proc": (bench_mpvalue_2proc, 100_000, 10_000),
    "manager_dict": (bench_manager_dict, 4_000, 400),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations and repeats")
    parser.add_argument("--filter", default="", help="regular expression on benchmark names")
    args = parser.parse_args()

    repeats = 3 if args.quick else 5
    results = {}
    for name, (fn, ops, quick_ops) in BENCHMARKS.items():
        if args.filter and not re.search(args.filter, name):
            continue
        n = quick_ops if args.quick else ops
        if fn(max(n // 10, 1)) is None:  # warm-up; None: not possible on this machine
            continue
        per_op = []
        for _ in range(repeats):
            elapsed, done = fn(n)
            per_op.append(elapsed / done)
        results[name] = {
            "seconds_per_op": statistics.median(per_op),
            "ops_per_repeat": n,
            "repeats": repeats,
            "cv": statistics.pstdev(per_op) / statistics.mean(per_op),
        }
        print(f"python: {name} done", file=sys.stderr)

    json.dump({"python": platform.python_version(), "repeats": repeats, "results": results},
              sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
