#!/usr/bin/env python3
"""tandem's benchmark report: tandem beside its baselines, and beside Python.

Runs the Google Benchmark binaries of a build (JSON output, median of repetitions, repetitions of
all benchmarks randomly interleaved so a burst of machine load hits both sides of a pair alike),
runs the same work in Python (bench/python/threading_bench.py, multiprocessing_bench.py), and prints one table: each tandem figure, its baseline from
the same run, the ratio stated in the direction of its target, whether the target is met, and the
same work in Python. Writes the table as Markdown (default bench/results/latest.md), an SVG chart
of the ratios with their targets next to it (.svg), and the raw measurements (.json).

Benchmarks are named `<pair>/tandem` and `<pair>/<baseline>`; PAIRS below says what each pair
measures and its target. A pair whose tandem side was not built is shown as not measured.

Usage: report.py [--build DIR] [--out FILE.md] [--quick] [--filter REGEX] [--check]
Standard library only.
"""

import argparse
import datetime
import html
import json
import math
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ratio_text(t):
    """A target ratio as the issues write it: 1.0, 1.5, 0.25."""
    text = f"{t:.2f}"
    return text[:-1] if text.endswith("0") else text


@dataclass(frozen=True)
class Pair:
    key: str  # benchmark names are <key>/tandem and <key>/<baseline>
    title: str
    binary: str
    baseline: str
    baseline_title: str
    metric: str  # "time": lower is better; "throughput": higher is better
    target: float | None  # ratio tandem/baseline (time) or tandem/baseline (throughput)
    stretch: float | None = None
    unit: str = "op"  # what one operation is, for throughput figures
    note: str = ""  # what a reader needs to know to read the ratio right
    family: str = ""  # the benchmarks' prefix when it is not `key` (a second baseline)
    python: str = "threading_bench.py"  # the script in bench/python/ doing the same work

    @property
    def prefix(self):
        return self.family or self.key


PAIRS = [
    Pair("lock", "lock acquire+release, uncontended", "tandem_bench_threading",
         "std_mutex", "std::mutex", "time", 1.0, stretch=0.6),
    Pair("rlock", "rlock acquire+release, uncontended", "tandem_bench_threading",
         "std_recursive_mutex", "std::recursive_mutex", "time", 1.5),
    Pair("semaphore", "semaphore acquire+release, uncontended", "tandem_bench_threading",
         "std_counting_semaphore", "std::counting_semaphore", "time", 1.5,
         note="libstdc++ 12's std::counting_semaphore makes a futex wake system call on every "
              "release from 0, waiters or not, which is most of its time here."),
    Pair("event", "event set+wait+clear, one thread", "tandem_bench_threading",
         "std_mutex_condvar", "mutex+condvar flag", "time", 1.5),
    Pair("queue_1to1", "queue(1024) of int, 1 producer -> 1 consumer", "tandem_bench_threading",
         "std_mutex_condvar", "mutex+condvar deque", "throughput", 2.0, unit="item"),
    Pair("queue_4to4", "queue(1024) of int, 4 producers -> 4 consumers",
         "tandem_bench_threading", "std_mutex_condvar", "mutex+condvar deque", "throughput",
         None, unit="item"),
    Pair("thread", "thread start+join", "tandem_bench_threading",
         "std_thread", "std::thread", "time", 1.5),
    Pair("actor_round_trip", "CAF actor <-> thread actor round trip", "tandem_bench_actor",
         "caf_actors", "CAF actor <-> CAF actor", "throughput", 1.0, unit="round trip",
         note="the baseline's two actors usually run on one CAF worker, so its round trip "
              "crosses no thread; the thread actor's crosses two (CAF worker -> tandem thread "
              "-> CAF worker). It is bimodal: while the worker and the thread both catch each "
              "other's messages spinning it matches the baseline; once either falls asleep, "
              "every round trip pays two wake-ups. Both systems run with tandem::runtime's "
              "scheduler settings (work-stealing.moderate-sleep-duration = 0)."),
    Pair("actor_round_trip_blocking", "the same round trip, vs a thread-bound CAF actor",
         "tandem_bench_actor", "caf_blocking_actor", "CAF detached blocking actor",
         "throughput", None, unit="round trip", family="actor_round_trip",
         note="CAF's own way to answer from a dedicated thread, which crosses threads as the "
              "tandem thread does; no target, it shows how much of the gap is the thread hop."),
    Pair("mpqueue_64b", "mp::queue, 64-byte items, 1 producer process -> 1 consumer process",
         "tandem_bench_mp", "boost_message_queue", "Boost.Interprocess message_queue",
         "throughput", 2.0, unit="item", python="multiprocessing_bench.py",
         note="both queues hold 1024 items (mp::queue in a 128 KiB ring); Python's column is "
              "multiprocessing.Queue(1024) with bytes items."),
    Pair("mpqueue_64k", "mp::queue, 64 KiB items, 1 producer process -> 1 consumer process",
         "tandem_bench_mp", "boost_message_queue", "Boost.Interprocess message_queue",
         "throughput", 1.5, unit="item", python="multiprocessing_bench.py",
         note="message_queue holds 64 items (4 MiB); mp::queue has its default 1 MiB buffer, "
              "which holds 15 such items and stays in the cache. The throughput ratio is the "
              "bandwidth ratio."),
    Pair("pipe_rt_1cpu", "connection round trip, 64 bytes, both processes on one CPU",
         "tandem_bench_mp", "socketpair", "socketpair read/write", "time", 1.0,
         unit="round trip", python="multiprocessing_bench.py"),
    Pair("pipe_rt_2cpu", "connection round trip, 64 bytes, processes on two CPUs",
         "tandem_bench_mp", "socketpair", "socketpair read/write", "time", 1.0,
         unit="round trip", python="multiprocessing_bench.py"),
    Pair("pipe_1mib", "1 MiB messages through a connection, process to process",
         "tandem_bench_mp", "memcpy", "memcpy of 1 MiB", "throughput", 0.3, unit="message",
         python="multiprocessing_bench.py"),
    Pair("default_start", "process start (default method) until its first message, + join",
         "tandem_bench_mp", "posix_spawn_true", "posix_spawn(/bin/true) + waitpid", "time", 2.0,
         unit="process", python="multiprocessing_bench.py",
         note="the default start method is forkserver: spawn re-executes the program, whose "
              "dynamic linking and start-up alone exceed the target, so, as the design asks, "
              "a fork server (started once, single-threaded) forks each child. Python's column "
              "is its default (fork on 3.11)."),
    Pair("spawn_start", "process start (spawn) until its first message, + join",
         "tandem_bench_mp", "posix_spawn_true", "posix_spawn(/bin/true) + waitpid", "time", None,
         unit="process", python="multiprocessing_bench.py",
         note="spawn re-executes the program (dynamic linking of CAF and the C++ runtime, static "
              "initialisers) before the child reaches its target; reported, not targeted: the "
              "default_start pair carries the target."),
    Pair("fork_start", "process start (fork) until its first message, + join",
         "tandem_bench_mp", "fork_waitpid", "fork + waitpid", "time", 2.0, unit="process",
         python="multiprocessing_bench.py"),
    Pair("shm_create", "shared memory, 4 KiB: create + attach by name + close both + unlink",
         "tandem_bench_mp", "posix_shm", "shm_open + ftruncate + mmap, twice, + shm_unlink",
         "time", None, unit="segment", python="multiprocessing_bench.py",
         note="tandem also writes and checks its header, registers the segment with its tracker "
              "and unregisters it; Python's column is shared_memory.SharedMemory."),
    Pair("mplock", "mp::lock acquire + release, uncontended", "tandem_bench_mp",
         "pthread_robust", "robust process-shared pthread mutex", "time", 1.0,
         python="multiprocessing_bench.py"),
    Pair("mplock_2proc", "2 processes incrementing a shared counter under mp::lock",
         "tandem_bench_mp", "pthread_pshared", "process-shared pthread mutex", "throughput", 1.0,
         unit="increment", python="multiprocessing_bench.py"),
    Pair("mpvalue_2proc", "2 processes incrementing mp::value<int64_t> under get_lock()",
         "tandem_bench_mp", "pthread_pshared", "process-shared pthread mutex + int64",
         "throughput", None, unit="increment", python="multiprocessing_bench.py",
         note="the figure the design asks for is the ratio to Python's Value (expected >= 15x)."),
    Pair("manager_dict", "manager dict set + get of integer keys from a child process",
         "tandem_bench_mp", "boost_map", "Boost.Interprocess map under an interprocess_mutex",
         "throughput", 0.25, unit="set+get", python="multiprocessing_bench.py",
         note="Python's column is a multiprocessing.Manager() dict used from a child process."),
]

TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
RUN_TIMEOUT = 1800  # seconds for one binary or the Python script


# -- running -----------------------------------------------------------------------------------


def run_benchmarks(binary, pairs, args):
    """Runs one benchmark binary on the given pairs; returns its parsed JSON output."""
    names = "|".join(dict.fromkeys(re.escape(p.prefix) for p in pairs))
    cmd = [str(binary), "--benchmark_format=json",
           f"--benchmark_filter=^({names})/",
           f"--benchmark_repetitions={args.repetitions}",
           "--benchmark_report_aggregates_only=true",
           "--benchmark_enable_random_interleaving=true",
           f"--benchmark_min_time={args.min_time}"]
    shown = ", ".join(dict.fromkeys(p.prefix for p in pairs))
    print(f"report: running {binary.name} ({shown})", file=sys.stderr)
    try:
        # A hang (a lost message, a deadlock in the code under test) becomes an error.
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        sys.exit(f"report: {binary.name} did not finish within {RUN_TIMEOUT} s")
    if proc.returncode != 0:
        sys.exit(f"report: {binary.name} failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


def run_python(pairs, args):
    """Runs each Python script the pairs name; returns their merged JSON output, or None."""
    merged = None
    for script_name in dict.fromkeys(p.python for p in pairs):
        group = [p for p in pairs if p.python == script_name]
        script = ROOT / "bench" / "python" / script_name
        cmd = [sys.executable, str(script), "--filter",
               "^(" + "|".join(dict.fromkeys(re.escape(p.prefix) for p in group)) + ")$"]
        if args.quick:
            cmd.append("--quick")
        print(f"report: running the Python equivalents ({script_name})", file=sys.stderr)
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"report: {script_name} did not finish within {RUN_TIMEOUT} s, its figures "
                  f"are left empty", file=sys.stderr)
            continue
        if proc.returncode != 0:
            print(f"report: {script_name} failed, its figures are left empty:\n{proc.stderr}",
                  file=sys.stderr)
            continue
        output = json.loads(proc.stdout)
        if merged is None:
            merged = output
        else:
            merged["results"].update(output["results"])
    return merged


# -- collecting --------------------------------------------------------------------------------


@dataclass
class Figure:
    seconds_per_op: float  # median over repetitions
    cv: float | None  # coefficient of variation over repetitions


def collect(outputs):
    """Maps "pair/impl" to its Figure, from the median (and cv) aggregates of every binary."""
    medians, cvs = {}, {}
    for output in outputs:
        for b in output.get("benchmarks", []):
            if b.get("error_occurred"):
                sys.exit(f"report: {b['name']} failed: {b.get('error_message')}")
            # A name without a /real_time or /manual_time suffix measures the thread's CPU time.
            name, n = re.subn(r"/(real_time|manual_time)$", "", b["run_name"])
            clock = "real_time" if n else "cpu_time"
            aggregate = b.get("aggregate_name", "median" if b["run_type"] == "iteration" else "")
            if aggregate == "median":
                if "items_per_second" in b:
                    medians[name] = 1.0 / b["items_per_second"]
                else:
                    medians[name] = b[clock] * TIME_UNITS[b["time_unit"]]
            elif aggregate == "cv":
                cvs[name] = b[clock]
    return {name: Figure(v, cvs.get(name)) for name, v in medians.items()}


@dataclass
class Row:
    pair: Pair
    tandem: Figure | None
    baseline: Figure | None
    python: float | None  # seconds per op

    @property
    def ratio(self):
        """tandem vs baseline in the direction of the target: time ratio or throughput ratio."""
        if not (self.tandem and self.baseline):
            return None
        if self.pair.metric == "time":
            return self.tandem.seconds_per_op / self.baseline.seconds_per_op
        return self.baseline.seconds_per_op / self.tandem.seconds_per_op

    def meets(self, target):
        if self.ratio is None or target is None:
            return None
        return self.ratio <= target if self.pair.metric == "time" else self.ratio >= target

    @property
    def status(self):
        if self.tandem is None:
            return "not measured (no tandem side)"
        if self.pair.target is None:
            return "reported"
        if not self.meets(self.pair.target):
            return "MISSED"
        if self.pair.stretch is not None:
            stretch = "met" if self.meets(self.pair.stretch) else "missed"
            return f"met (stretch {stretch})"
        return "met"

    @property
    def shortfall(self):
        """How far a missed target is off, as a sentence fragment."""
        t, r = self.pair.target, self.ratio
        if self.pair.metric == "time":
            return (f"{r:.3g}x the baseline's time, target <= {ratio_text(t)}x "
                    f"({(r / t - 1) * 100:.0f}% over)")
        return (f"{r:.3g}x the baseline's throughput, target >= {ratio_text(t)}x "
                f"({(1 - r / t) * 100:.0f}% short, {t / r:.3g}x too slow)")


# -- formatting --------------------------------------------------------------------------------


def fmt_time(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return "?"


def fmt_rate(per_second, unit):
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0)):
        if per_second >= scale or suffix == "":
            return f"{per_second / scale:.3g}{suffix} {unit}s/s"
    return "?"


def fmt_figure(fig, pair):
    if fig is None:
        return "-"
    text = (fmt_time(fig.seconds_per_op) if pair.metric == "time"
            else fmt_rate(1.0 / fig.seconds_per_op, pair.unit))
    if fig.cv is not None:
        text += f" ±{fig.cv * 100:.0f}%"
    return text


def fmt_target(pair):
    if pair.target is None:
        return "report only"
    op = "<=" if pair.metric == "time" else ">="
    text = f"{op} {ratio_text(pair.target)}x"
    if pair.stretch is not None:
        text += f" (stretch {ratio_text(pair.stretch)}x)"
    return text


def fmt_ratio(row):
    if row.ratio is None:
        return "-"
    return f"{row.ratio:.3g}x {'time' if row.pair.metric == 'time' else 'throughput'}"


HEADER = ["benchmark", "tandem", "baseline", "ratio", "target", "result", "Python",
          "tandem vs Python"]


def table_cells(row):
    p = row.pair
    py = "-" if row.python is None else f"{fmt_time(row.python)}/{p.unit}"
    speedup = "-"
    if row.python is not None and row.tandem is not None:
        x = row.python / row.tandem.seconds_per_op
        factor = x if x >= 1 else 1 / x
        factor_text = f"{factor:.2f}" if factor < 10 else f"{factor:.0f}"
        speedup = f"{factor_text}x " + ("faster" if x >= 1 else "slower")
    return [p.title, fmt_figure(row.tandem, p),
            f"{fmt_figure(row.baseline, p)} ({p.baseline_title})",
            fmt_ratio(row), fmt_target(p), row.status, py, speedup]


def text_table(rows):
    cells = [HEADER] + [table_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = [c.replace("|", "\\|") for c in table_cells(r)]
        if r.status == "MISSED":
            cells[5] = "**MISSED**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows):
    missed = [r for r in rows if r.status == "MISSED"]
    unmeasured = [r for r in rows if r.tandem is None]
    met = [r for r in rows if r.meets(r.pair.target)]
    targets = [r for r in rows if r.pair.target is not None]
    lines = [f"Targets met: {len(met)} of {len(targets)} ({len(missed)} missed, "
             f"{sum(1 for r in targets if r.tandem is None)} not measured)."]
    for r in missed:
        lines.append(f"Missed: {r.pair.title}: {r.shortfall}.")
    for r in unmeasured:
        lines.append(f"Not measured: {r.pair.title} (tandem's side is not built).")
    for r in rows:
        if r.pair.note:
            lines.append(f"Note on {r.pair.key}: {r.pair.note}")
    return lines


def build_type(build_dir):
    """CMAKE_BUILD_TYPE of the build directory, as its CMakeCache.txt says."""
    try:
        cache = (build_dir / "CMakeCache.txt").read_text()
    except OSError:
        return "unknown"
    match = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", cache, re.MULTILINE)
    return match.group(1) if match and match.group(1) else "none"


def context_lines(outputs, args, python):
    ctx = outputs[0]["context"] if outputs else {}
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    load = ", ".join(f"{x:.2f}" for x in ctx.get("load_avg", []))
    lines = [
        f"Measured {ctx.get('date', datetime.datetime.now().isoformat())} at commit {commit} on "
        f"{ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz "
        f"(load average {load or '?'}).",
        f"C++ ({args.build_type} build): median of {args.repetitions} repetitions (min "
        f"{args.min_time} s each, randomly interleaved), ±cv across them. Single-thread pairs "
        f"(lock, rlock, semaphore, event) are the measuring thread's CPU time; the others wall "
        f"time. The Google Benchmark "
        f"library itself is a {ctx.get('library_build_type', '?')} build; it stays outside the "
        f"timed loops.",
    ]
    if args.build_type != "Release":
        lines.append(f"WARNING: {args.build} is not a Release build (CMAKE_BUILD_TYPE: "
                     f"{args.build_type}): these figures do not represent tandem.")
    if python:
        lines.append(f"Python {python['python']}: median of {python['repeats']} repeats of the "
                     f"same work (bench/python/), timed the same way.")
    lines.append("Ratios are stated in the direction of the target: a time ratio is tandem's "
                 "time over the baseline's (lower is better), a throughput ratio is tandem's "
                 "throughput over the baseline's (higher is better).")
    return lines


# -- chart -------------------------------------------------------------------------------------


def svg_chart(rows):
    """A horizontal bar per ratio, with its target (solid) and stretch target (dashed)."""
    rows = [r for r in rows if r.ratio is not None]
    left, plot_w, right, top, row_h, bottom = 330, 430, 200, 56, 38, 44
    width = left + plot_w + right
    height = top + row_h * max(len(rows), 1) + bottom
    targets = [t for r in rows for t in (r.pair.target, r.pair.stretch) if t is not None]
    # Scale to the largest ratio, but keep targets readable when one ratio is huge.
    xmax = max([1.0] + targets + [r.ratio for r in rows]) * 1.1
    if targets:
        xmax = min(xmax, max(2.0, max(targets) * 2.5))
    xmax = math.ceil(xmax * 2) / 2

    def x(v):
        return left + plot_w * min(v, xmax) / xmax

    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" '
           f'font-weight="bold">tandem vs baseline, same run</text>',
           f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">ratio in the '
           f'direction of the target; black line: target, dashed: stretch target</text>']
    # Grid and axis.
    step = 0.5 if xmax <= 4 else 1.0
    grid_bottom = top + row_h * len(rows)
    v = 0.0
    while v <= xmax + 1e-9:
        colour = "#999" if abs(v - 1.0) < 1e-9 else "#e0e0e0"
        out.append(f'<line x1="{x(v):.1f}" y1="{top - 4}" x2="{x(v):.1f}" y2="{grid_bottom}" '
                   f'stroke="{colour}"/>')
        out.append(f'<text x="{x(v):.1f}" y="{grid_bottom + 16}" text-anchor="middle" '
                   f'fill="#555">{v:g}x</text>')
        v += step
    for i, r in enumerate(rows):
        y = top + i * row_h
        met = r.meets(r.pair.target)
        colour = "#9e9e9e" if met is None else ("#2e7d32" if met else "#c62828")
        direction = "time, lower is better" if r.pair.metric == "time" else \
            "throughput, higher is better"
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">'
                   f'{esc(r.pair.title)}</text>')
        out.append(f'<text x="{left - 8}" y="{y + 29}" text-anchor="end" fill="#777" '
                   f'font-size="10">{esc(r.pair.baseline_title)}; {direction}</text>')
        out.append(f'<rect x="{left}" y="{y + 8}" width="{x(r.ratio) - left:.1f}" height="20" '
                   f'fill="{colour}"/>')
        # Values go in a column right of the plot, where no target line can cross them.
        clipped = " (off scale)" if r.ratio > xmax else ""
        result = "no target" if met is None else ("met" if met else "MISSED")
        target = "" if r.pair.target is None else ", target " + \
            fmt_target(r.pair).replace("<=", "\u2264").replace(">=", "\u2265")
        out.append(f'<text x="{left + plot_w + 12}" y="{y + 22}" fill="{colour}" '
                   f'font-weight="bold">{r.ratio:.3g}x {result}</text>')
        out.append(f'<text x="{left + plot_w + 12}" y="{y + 34}" fill="#777" font-size="10">'
                   f'{esc(target.lstrip(", "))}{clipped}</text>')
        for t, dash in ((r.pair.target, ""), (r.pair.stretch, ' stroke-dasharray="3,2"')):
            if t is not None:
                out.append(f'<line x1="{x(t):.1f}" y1="{y + 3}" x2="{x(t):.1f}" y2="{y + 33}" '
                           f'stroke="black" stroke-width="2"{dash}/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" '
               f'fill="#555">tandem / baseline</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- main --------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build/release", help="build directory (has bench/)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.md"),
                        help="Markdown output; the .svg and .json go next to it")
    parser.add_argument("--quick", action="store_true", help="a short, noisier run")
    parser.add_argument("--filter", default="", help="regular expression on pair names "
                        f"({', '.join(p.key for p in PAIRS)})")
    parser.add_argument("--repetitions", type=int, help="repetitions per benchmark (10; quick 3)")
    parser.add_argument("--min-time", type=float, help="seconds per repetition (0.3; quick 0.05)")
    parser.add_argument("--no-python", action="store_true", help="skip the Python equivalents")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.repetitions is None:
        args.repetitions = 3 if args.quick else 10
    if args.min_time is None:
        args.min_time = 0.05 if args.quick else 0.3

    pairs = [p for p in PAIRS if re.search(args.filter, p.key)]
    if not pairs:
        sys.exit(f"report: --filter {args.filter!r} matches no benchmark")
    bench_dir = Path(args.build).resolve() / "bench"
    args.build_type = build_type(bench_dir.parent)
    if args.build_type != "Release":
        print(f"report: WARNING: {args.build} is not a Release build (CMAKE_BUILD_TYPE: "
              f"{args.build_type})", file=sys.stderr)

    outputs, run_pairs = [], []
    for binary_name in dict.fromkeys(p.binary for p in pairs):
        binary = bench_dir / binary_name
        group = [p for p in pairs if p.binary == binary_name]
        if not os.access(binary, os.X_OK):
            print(f"report: {binary} is missing (build the release preset with Google "
                  f"Benchmark installed); skipping {', '.join(p.key for p in group)}",
                  file=sys.stderr)
            continue
        outputs.append(run_benchmarks(binary, group, args))
        run_pairs += group
    if not outputs:
        sys.exit(f"report: no benchmark binary in {bench_dir}")

    figures = collect(outputs)
    python = None if args.no_python else run_python(run_pairs, args)
    py_results = python["results"] if python else {}
    rows = [Row(p, figures.get(f"{p.prefix}/tandem"), figures.get(f"{p.prefix}/{p.baseline}"),
                py_results.get(p.prefix, {}).get("seconds_per_op"))
            for p in run_pairs if f"{p.prefix}/{p.baseline}" in figures]

    context = context_lines(outputs, args, python)
    print()
    print(text_table(rows))
    print()
    print("\n".join(summary(rows) + context))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    svg = out.with_suffix(".svg")
    svg.write_text(svg_chart(rows))
    md = ["# tandem benchmarks", "", markdown_table(rows), "",
          *[f"- {line}" for line in summary(rows) + context], "",
          f"![tandem / baseline ratios]({svg.name})", ""]
    out.write_text("\n".join(md))
    raw_rows = [{"pair": r.pair.key, "metric": r.pair.metric, "target": r.pair.target,
                 "tandem_seconds_per_op": r.tandem and r.tandem.seconds_per_op,
                 "baseline_seconds_per_op": r.baseline and r.baseline.seconds_per_op,
                 "ratio": r.ratio, "status": r.status, "python_seconds_per_op": r.python}
                for r in rows]
    out.with_suffix(".json").write_text(json.dumps(
        {"benchmarks": outputs, "python": python, "rows": raw_rows}, indent=2) + "\n")
    print(f"\nreport: wrote {out}, {svg.name} and {out.with_suffix('.json').name}", file=sys.stderr)

    if args.check and any(r.status == "MISSED" for r in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
