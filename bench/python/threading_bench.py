#!/usr/bin/env python3
"""The work of tandem's threading benchmarks, done with Python's threading and queue modules.

Each benchmark does what its C++ pair does (same names, same batch shapes) and reports seconds per
operation: per acquire+release, per set+wait+clear, per item moved through a queue, per thread
start+join, per round trip. Every figure is the median of several repeats. Prints JSON:

    {"python": "3.11.7", "repeats": 7, "results": {"lock": {"seconds_per_op": 4.1e-08, ...}}}

Usage: threading_bench.py [--quick] [--filter REGEX]   (REGEX is matched against the names)
"""

import argparse
import json
import platform
import queue
import re
import statistics
import sys
import threading
import time

# -- single-thread primitives -----------------------------------------------------------------
# Bound methods are hoisted out of the loop: the figure is the primitive's cost, not attribute
# lookups, so Python is shown at its best. As in the C++ pairs, these are timed in the thread's
# CPU time (all the work is in this thread); the multi-threaded ones below in wall time.
cpu_clock = time.thread_time


def bench_lock(n):
    lk = threading.Lock()
    acquire, release = lk.acquire, lk.release
    start = cpu_clock()
    for _ in range(n):
        acquire()
        release()
    return cpu_clock() - start, n


def bench_rlock(n):
    lk = threading.RLock()
    acquire, release = lk.acquire, lk.release
    start = cpu_clock()
    for _ in range(n):
        acquire()
        release()
    return cpu_clock() - start, n


def bench_semaphore(n):
    sem = threading.Semaphore(1)
    acquire, release = sem.acquire, sem.release
    start = cpu_clock()
    for _ in range(n):
        acquire()
        release()
    return cpu_clock() - start, n


def bench_event(n):
    ev = threading.Event()
    set_, wait, clear = ev.set, ev.wait, ev.clear
    start = cpu_clock()
    for _ in range(n):
        set_()
        wait()
        clear()
    return cpu_clock() - start, n


# -- queues: the C++ shape (maxsize 1024, fixed share per consumer, sum checked) ----------------


def run_together(parties):
    """Starts one thread per party, releases them together, returns seconds until all joined."""
    ready = threading.Barrier(len(parties) + 1)

    def body(fn):
        ready.wait()
        fn()

    threads = [threading.Thread(target=body, args=(fn,)) for fn in parties]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def transfer(items, producers, consumers):
    q = queue.Queue(1024)
    sums = []

    def producer(first):
        put = q.put
        for i in range(first, items, producers):
            put(i)

    def consumer(share):
        get = q.get
        total = 0
        for _ in range(share):
            total += get()
        sums.append(total)

    parties = [lambda p=p: producer(p) for p in range(producers)]
    parties += [lambda c=c: consumer(items // consumers + (1 if c < items % consumers else 0))
                for c in range(consumers)]
    elapsed = run_together(parties)
    if sum(sums) != items * (items - 1) // 2:
        raise RuntimeError("items were lost or duplicated")
    return elapsed, items


def bench_queue_1to1(n):
    return transfer(n, 1, 1)


def bench_queue_4to4(n):
    return transfer(n, 4, 4)


# -- threads -----------------------------------------------------------------------------------


def bench_thread(n):
    def target():
        pass

    start = time.perf_counter()
    for _ in range(n):
        t = threading.Thread(target=target)
        t.start()
        t.join()
    return time.perf_counter() - start, n


def bench_actor_round_trip(n):
    """A thread answering through a pair of queues: Python's nearest thing to a thread actor."""
    inbox, outbox = queue.Queue(), queue.Queue()

    def ponger():
        get, put = inbox.get, outbox.put
        while (x := get()) is not None:
            put(x)

    t = threading.Thread(target=ponger)
    t.start()
    put, get = inbox.put, outbox.get
    start = time.perf_counter()
    for i in range(n):
        put(i)
        get()
    elapsed = time.perf_counter() - start
    inbox.put(None)
    t.join()
    return elapsed, n


# name: (function, operations per repeat, quick operations per repeat)
BENCHMARKS = {
    "lock": (bench_lock, 1_000_000, 100_000),
    "rlock": (bench_rlock, 1_000_000, 100_000),
    "semaphore": (bench_semaphore, 300_000, 30_000),
    "event": (bench_event, 300_000, 30_000),
    "queue_1to1": (bench_queue_1to1, 1 << 16, 1 << 13),
    "queue_4to4": (bench_queue_4to4, 1 << 16, 1 << 13),
    "thread": (bench_thread, 3_000, 300),
    "actor_round_trip": (bench_actor_round_trip, 20_000, 2_000),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations and repeats")
    parser.add_argument("--filter", default="", help="regular expression on benchmark names")
    args = parser.parse_args()

    repeats = 3 if args.quick else 7
    # As in the C++ binaries: the process has started a thread before anything is measured.
    warm = threading.Thread(target=lambda: None)
    warm.start()
    warm.join()

    results = {}
    for name, (fn, ops, quick_ops) in BENCHMARKS.items():
        if args.filter and not re.search(args.filter, name):
            continue
        n = quick_ops if args.quick else ops
        fn(max(n // 10, 1))  # warm-up
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
