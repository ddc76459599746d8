// tandem's flagship example: a log-analysis pipeline.
//
//            work queue                    results queue
//   source  ------------->  worker 1  ---------------->  aggregator  ->  summary
//   (1)     (bounded)       worker 2       (bounded)     (1)
//                           ...
//
// The source "reads" web-server access logs (generated from a seed, so every run with the same
// seed sees the same data) in batches; workers parse every line and compute statistics (status
// codes, routes, clients, latency percentiles, a checksum of the text); the aggregator merges the
// partial results. Both queues are bounded: a stage that runs ahead blocks in put() until the next
// one catches up (backpressure), so memory stays bounded however large the input.
//
// Shutdown follows the data: when the source has put its last batch it shuts the work queue
// down (Python 3.13's Queue.shutdown): workers drain what is left, then get() throws
// shut_down_error and they leave. The last worker to leave shuts the results queue down, which
// stops the aggregator the same way. A stage that fails shuts both queues down at once
// (shutdown(immediate = true)), which stops every other stage promptly.
//
// Two ways to run the workers (--mode):
//   threads    (the default) tandem::thread workers, tandem::queue's between the stages: a batch
//              moves through a queue as a pointer hand-off.
//   processes  tandem::mp::process workers, tandem::mp::queue's in shared memory between the
//              stages: every batch and every partial result is serialized into the queue and
//              decoded on the other side (stages.hpp gives each type a CAF inspect overload). The
//              source and the aggregator stay threads of the main process; each worker process
//              gets the two queues as arguments. The main thread watches the workers' sentinels:
//              when the last worker has exited, it shuts the results queue down (an exited worker
//              has nothing in flight: put() returns once the item is in shared memory), and a
//              worker that dies (a crash, kill -9) fails the run instead of losing a batch
//              silently. The queues' buffers are sized from --batch and --queue-size so that a
//              serialized batch and a serialized partial result always fit.
//
// At the end the program computes the same statistics in one thread and checks that the pipeline
// got exactly the same result; it exits with status 1 when not.
//
// The stage logic lives in stages.hpp and knows nothing about threads or processes: the runners
// below share the source, worker and aggregator loops and differ only in what runs them.
//
//   Python                                       tandem
//   threading.Thread(target=worker)              tandem::thread                 (--mode=threads)
//   queue.Queue(maxsize=8)                       tandem::queue<batch>{8}
//   multiprocessing.Process(target=worker)       tandem::mp::process          (--mode=processes)
//   multiprocessing.Queue(maxsize=8)             tandem::mp::queue<batch>{{.maxsize = 8, ...}}
//   queue.Queue.shutdown()  (3.13)               q.shutdown()  (mp::queue too; Python's has none)
//   multiprocessing.connection.wait(sentinels)   tandem::mp::wait(sentinels, 100ms)
//
//   pipeline [--items=N] [--workers=N] [--seed=N] [--queue-size=N] [--batch=N]
//            [--mode=threads|processes] [CAF's options, e.g. --scheduler.max-threads=2] [--help]

#include "stages.hpp"

#include <tandem/error.hpp>
#include <tandem/event.hpp>
#include <tandem/lock.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/queue.hpp>
#include <tandem/mp/wait.hpp>
#include <tandem/queue.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include <caf/actor_system_config.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// -- options ----------------------------------------------------------------------------------

struct options {
  std::uint64_t items = 2'000'000;
  std::size_t workers = std::max(1u, std::thread::hardware_concurrency());
  std::uint64_t seed = 42;
  std::size_t queue_size = 8;
  std::size_t batch = 1000;
  std::string mode = "threads";
};

// The program's options join CAF's own in the runtime's configuration, so one command line (and
// caf-application.ini) sets both, and --help lists both.
class pipeline_config : public caf::actor_system_config {
public:
  options opt;

  pipeline_config() {
    opt_group{custom_options_, "global"}
        .add(opt.items, "items,n", "log lines to analyse (default 2000000)")
        .add(opt.workers, "workers,w", "workers, threads or processes (default: one per CPU)")
        .add(opt.seed, "seed,s", "seed of the generated data set (default 42)")
        .add(opt.queue_size, "queue-size,q",
             "capacity of each queue in batches, 0 for unbounded (default 8)")
        .add(opt.batch, "batch,b", "lines per batch (default 1000)")
        .add(opt.mode, "mode",
             "how workers run: threads (the default), or processes (worker processes "
             "connected by shared-memory queues)");
  }
};

const char* const about =
    "\npipeline: analyses generated web-server access logs with a source -> workers -> aggregator\n"
    "pipeline of tandem threads connected by bounded tandem queues (with --mode=processes, the\n"
    "workers are processes connected by bounded cross-process queues in shared memory), then\n"
    "checks the result against a single-threaded run.\n"
    "Examples: pipeline --items=5000000 --workers=4 --queue-size=2\n"
    "          pipeline --mode=processes --items=5000000\n";

// An error message for options the parser accepted but the program cannot use, or nullptr.
const char* invalid(const options& opt) {
  if (opt.workers < 1 || opt.workers > 1024) return "--workers must be between 1 and 1024";
  if (opt.batch < 1 || opt.batch > 1'000'000) return "--batch must be between 1 and 1000000";
  if (opt.queue_size > 1'000'000) return "--queue-size must be at most 1000000";
  if (opt.mode != "threads" && opt.mode != "processes")
    return "--mode must be threads or processes";
  return nullptr;
}

// -- formatting -------------------------------------------------------------------------------

// 1234567 -> "1,234,567".
std::string with_commas(std::uint64_t n) {
  auto digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// "3 worker processes", "1 worker thread".
std::string describe_workers(const options& opt) {
  bool processes = opt.mode == "processes";
  return std::to_string(opt.workers) + " worker " +
         (processes ? (opt.workers == 1 ? "process" : "processes")
                    : (opt.workers == 1 ? "thread" : "threads"));
}

double seconds(clock_type::duration d) {
  return std::chrono::duration<double>(d).count();
}

// -- progress ---------------------------------------------------------------------------------

// A progress line on stderr for long runs: rewritten in place on a terminal, a new line every
// few seconds otherwise (a log file or CI output). Short runs print nothing.
class progress_line {
public:
  explicit progress_line(std::uint64_t total)
      : total_(total), tty_(isatty(STDERR_FILENO) == 1), start_(clock_type::now()) {}

  void show(std::uint64_t done, std::string_view detail) {
    auto now = clock_type::now();
    if (now - start_ < 1s || now - last_ < (tty_ ? 100ms : 2s)) return;
    last_ = now;
    double pct =
        total_ == 0 ? 100.0 : 100.0 * static_cast<double>(done) / static_cast<double>(total_);
    double rate = static_cast<double>(done) / seconds(now - start_);
    std::fprintf(stderr, "%s%s / %s lines  %5.1f%%  %.2f M lines/s  %.*s%s",
                 tty_ ? "\r\033[K" : "  progress: ", with_commas(done).c_str(),
                 with_commas(total_).c_str(), pct, rate / 1e6, static_cast<int>(detail.size()),
                 detail.data(), tty_ ? "" : "\n");
    std::fflush(stderr);
    shown_ = true;
  }

  /// Clears the line on a terminal, so that the summary starts on a clean line.
  void done() {
    if (tty_ && shown_) std::fprintf(stderr, "\r\033[K");
  }

private:
  std::uint64_t total_;
  bool tty_;
  bool shown_ = false;
  clock_type::time_point start_;
  clock_type::time_point last_{};
};

// -- running the stages -----------------------------------------------------------------------

/// Time one stage (or one worker) spent working and waiting on its queues. Trivially copyable:
/// a worker process sends its own through a cross-process queue as plain bytes.
struct stage_time {
  clock_type::duration busy{};
  clock_type::duration waiting{}; // blocked in get() (input empty) or put() (output full)
  std::uint64_t batches = 0;
};

/// What a run produced and measured, whichever runner ran the stages.
struct run_report {
  pipeline::log_stats result;
  clock_type::duration wall{};
  stage_time source;
  std::vector<stage_time> workers;
  stage_time aggregator;
  std::exception_ptr failure; // the first exception a stage threw, if any
};

/// The worker stage's loop, the same in a thread and in a process: batches in, partial results
/// out, until the work queue is shut down and empty. A put into a results queue that was shut
/// down (the pipeline is stopping) throws shut_down_error to the caller.
template <class Work, class Results>
void work_loop(Work& work, Results& results, stage_time& t) {
  for (;;) {
    auto t0 = clock_type::now();
    pipeline::batch b;
    try {
      b = work.get();
    } catch (const tandem::shut_down_error&) {
      break; // the source is done and the queue is empty
    }
    auto t1 = clock_type::now();
    auto part = pipeline::analyze(b);
    auto t2 = clock_type::now();
    results.put(std::move(part)); // blocks while the aggregator is behind
    t.waiting += (t1 - t0) + (clock_type::now() - t2);
    t.busy += t2 - t1;
    ++t.batches;
  }
}

/// One run of the pipeline: its two queues (tandem::queue's, or mp::queue's when the workers are
/// processes), the source and aggregator loops, which run as threads of this process in both
/// modes, and how a failure stops the run.
template <class Work, class Results>
struct run_state {
  const options& opt;
  Work work;                                // source -> workers
  Results results;                          // workers -> aggregator
  std::atomic<std::uint64_t> lines_done{0}; // for the progress line
  tandem::event finished;                   // set when the aggregator leaves
  tandem::lock failure_lock;
  // Each stage writes only its own parts; the main thread reads them after join().
  run_report report;

  // `work_arg` and `results_arg` construct the queues (tandem's queues cannot be moved).
  template <class WorkArg, class ResultsArg>
  run_state(const options& o, const WorkArg& work_arg, const ResultsArg& results_arg)
      : opt(o), work(work_arg), results(results_arg) {
    report.workers.resize(o.workers);
  }

  // The first failure stops the whole pipeline: both queues shut down at once, so every stage
  // blocked in get() or put() gets shut_down_error and leaves (worker processes too: the queues
  // are shared).
  void fail(std::exception_ptr e) {
    {
      std::scoped_lock guard{failure_lock};
      if (!report.failure) report.failure = e;
    }
    work.shutdown(true);
    results.shutdown(true);
  }

  // Every stage runs inside this: shut_down_error means "the pipeline is stopping", anything
  // else is a failure.
  template <class Body>
  void guarded(Body&& body) {
    try {
      body();
    } catch (const tandem::shut_down_error&) {
    } catch (...) {
      fail(std::current_exception());
    }
  }

  void source() {
    guarded([&] {
      auto& t = report.source;
      for (std::uint64_t first = 0; first < opt.items; first += opt.batch) {
        auto t0 = clock_type::now();
        auto count =
            static_cast<std::size_t>(std::min<std::uint64_t>(opt.batch, opt.items - first));
        auto b = pipeline::read_batch(opt.seed, first, count);
        auto t1 = clock_type::now();
        work.put(std::move(b)); // blocks while the queue is full: the workers are behind
        t.busy += t1 - t0;
        t.waiting += clock_type::now() - t1;
        ++t.batches;
      }
      work.shutdown(); // no more batches: workers finish what is queued, then leave
    });
  }

  void aggregator() {
    guarded([&] {
      auto& t = report.aggregator;
      for (;;) {
        auto t0 = clock_type::now();
        pipeline::log_stats part;
        try {
          part = results.get();
        } catch (const tandem::shut_down_error&) {
          break; // every worker has left and every result is merged
        }
        auto t1 = clock_type::now();
        report.result.merge(part);
        lines_done += part.lines;
        t.waiting += t1 - t0;
        t.busy += clock_type::now() - t1;
        ++t.batches;
      }
    });
    finished.set();
  }

  // The progress line's detail: the queue depths show where the pipeline is waiting.
  void show_progress(progress_line& progress) const {
    char detail[96];
    std::snprintf(detail, sizeof detail, "queued: %zu work, %zu results", work.qsize(),
                  results.qsize());
    progress.show(lines_done.load(), detail);
  }
};

// -- in threads -------------------------------------------------------------------------------

/// Runs the pipeline with tandem threads and tandem queues.
run_report run_threads(const options& opt) {
  auto start = clock_type::now();
  using state = run_state<tandem::queue<pipeline::batch>, tandem::queue<pipeline::log_stats>>;
  state run{opt, opt.queue_size, opt.queue_size};
  std::atomic<std::size_t> workers_left{opt.workers};

  std::vector<tandem::thread> threads;
  threads.reserve(opt.workers + 2);
  threads.emplace_back(tandem::thread::options{.name = "source"}, [&run] { run.source(); });
  auto worker = [&run, &workers_left](std::size_t i) {
    run.guarded([&] { work_loop(run.work, run.results, run.report.workers[i]); });
    // The last worker out closes the aggregator's input.
    if (--workers_left == 0) run.results.shutdown();
  };
  for (std::size_t i = 0; i < opt.workers; ++i)
    threads.emplace_back(tandem::thread::options{.name = "worker-" + std::to_string(i + 1)},
                         [worker, i] { worker(i); });
  threads.emplace_back(tandem::thread::options{.name = "aggregator"}, [&run] { run.aggregator(); });

  std::size_t started = 0;
  try {
    for (auto& t : threads) {
      t.start();
      ++started;
    }
  } catch (...) {
    // The OS refused a thread: stop the stages that run, and report the failure.
    run.fail(std::current_exception());
    for (std::size_t i = 0; i < started; ++i) threads[i].join();
    return std::move(run.report);
  }

  // The main thread only watches.
  progress_line progress{opt.items};
  while (!run.finished.wait(100ms)) run.show_progress(progress);
  progress.done();

  // join() also makes every stage's writes to the report visible here.
  for (auto& t : threads) t.join();
  run.report.wall = clock_type::now() - start;
  return std::move(run.report);
}

// -- in processes -----------------------------------------------------------------------------

/// What a worker process reports when it leaves: which worker, and its stage time.
struct worker_time {
  std::size_t index = 0;
  stage_time time;
};

using work_queue = tandem::mp::queue<pipeline::batch>;
using results_queue = tandem::mp::queue<pipeline::log_stats>;

/// A worker process: the worker loop over the shared queues, then its time into `times`. A
/// failure (a batch that does not decode, a result too large for the queue) shuts both queues
/// down at once, as a failing thread does, and ends the process with exit code 1 (the exception
/// is printed on stderr): the main process sees the exit code and fails the run.
void process_worker(std::size_t index, work_queue work, results_queue results,
                    tandem::mp::queue<worker_time> times) {
  worker_time mine{index, {}};
  try {
    work_loop(work, results, mine.time);
  } catch (const tandem::shut_down_error&) {
    // The pipeline is stopping: another stage failed.
  } catch (...) {
    work.shutdown(true);
    results.shutdown(true);
    throw;
  }
  times.put(mine);
}

// Upper bounds of the serialized sizes of a batch and of a worker's partial result (tandem's
// codec: a 9-byte header, integers at fixed width, a varint of at most 10 bytes before every
// string and container; std::array without a length). A partial result is mostly fixed-size
// arrays (status codes, hours, the latency histogram: about 16 KB) plus one entry per distinct
// client, route and method of its batch.
std::size_t batch_bytes_bound(const options& opt) {
  return 9 + 8 + 8 + 10 + opt.batch * pipeline::max_line_bytes;
}

std::size_t stats_bytes_bound(const options& opt) {
  using stats = pipeline::log_stats;
  constexpr std::size_t numbers = 5 + std::tuple_size_v<decltype(stats::by_status)> +
                                  std::tuple_size_v<decltype(stats::by_hour)> +
                                  pipeline::latency_histogram::n_buckets + 2;
  constexpr std::size_t fixed = 9 + 8 * numbers + 3 * 10; // header, numbers, 3 map lengths
  constexpr std::size_t key = 10 + pipeline::max_key_bytes;
  auto clients = std::min(opt.batch, pipeline::max_clients); // a batch of n lines has <= n
  return fixed + pipeline::max_methods * (key + 8) + pipeline::max_routes * (key + 4 * 8) +
         clients * (key + 8);
}

// A queue's shared buffer: room for every item the queue may hold at the largest size, plus one
// (a put waits for room in the buffer as well as for a free slot); 64 items' worth for an
// unbounded queue. At most the largest buffer a queue allows.
tandem::mp::queue_options queue_sizing(const options& opt, std::size_t item_bound) {
  constexpr std::size_t max_buffer = std::size_t{1} << 30;
  std::size_t items = (opt.queue_size == 0 ? 64 : opt.queue_size) + 1;
  std::size_t bytes = item_bound > max_buffer / items ? max_buffer : item_bound * items;
  return {.maxsize = opt.queue_size, .buffer_bytes = bytes};
}

/// Runs the pipeline with worker processes and cross-process queues; the source and the
/// aggregator are threads of this process.
run_report run_processes(const options& opt) {
  auto start = clock_type::now();
  using state = run_state<work_queue, results_queue>;
  state run{opt, queue_sizing(opt, batch_bytes_bound(opt)),
            queue_sizing(opt, stats_bytes_bound(opt))};
  tandem::mp::queue<worker_time> times; // unbounded: one small item per worker

  // Each process gets handles of the queues (copies: this process keeps its own).
  std::vector<tandem::mp::process> workers;
  workers.reserve(opt.workers);
  for (std::size_t i = 0; i < opt.workers; ++i)
    workers.emplace_back(tandem::mp::process::options{.name = "worker-" + std::to_string(i + 1)},
                         process_worker, i, run.work, run.results, times);
  tandem::thread source{{.name = "source"}, [&run] { run.source(); }};
  tandem::thread aggregator{{.name = "aggregator"}, [&run] { run.aggregator(); }};

  std::size_t started = 0;
  try {
    for (auto& w : workers) {
      w.start();
      ++started;
    }
    source.start();
    aggregator.start();
  } catch (...) {
    // The OS refused a process or a thread: stop what runs, and report the failure.
    run.fail(std::current_exception());
    for (std::size_t i = 0; i < started; ++i) workers[i].join();
    if (source.is_alive()) source.join();
    return std::move(run.report);
  }

  // The main thread watches the workers' sentinels. The last worker to exit has put its last
  // result (put() returns once the item is in shared memory), so the results queue can shut
  // down; a worker that did not exit with 0 lost what it held, and the run fails.
  progress_line progress{opt.items};
  std::vector<bool> running(opt.workers, true);
  std::size_t left = opt.workers;
  while (left > 0) {
    std::vector<tandem::mp::waitable> sentinels;
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < opt.workers; ++i)
      if (running[i]) {
        sentinels.emplace_back(workers[i].sentinel());
        which.push_back(i);
      }
    for (std::size_t k : tandem::mp::wait(sentinels, 100ms)) {
      auto& w = workers[which[k]];
      w.join();
      running[which[k]] = false;
      --left;
      if (auto code = w.exitcode(); code != 0)
        run.fail(std::make_exception_ptr(
            tandem::process_error(w.name() + " (pid " + std::to_string(w.pid().value_or(0)) +
                                  ") exited with code " + std::to_string(code.value_or(0)) +
                                  (code.value_or(0) < 0 ? " (killed by a signal)" : "") +
                                  ": the batches it held are lost")));
    }
    if (left == 0) run.results.shutdown(); // the last worker out closes the aggregator's input
    run.show_progress(progress);
  }
  while (!run.finished.wait(100ms)) run.show_progress(progress);
  progress.done();

  source.join();
  aggregator.join();
  run.report.wall = clock_type::now() - start;
  while (auto t = times.get(0s)) run.report.workers[t->index] = t->time;
  return std::move(run.report);
}

/// The same stages, one after the other in this thread: the reference the pipeline must match.
pipeline::log_stats run_single_threaded(const options& opt) {
  pipeline::log_stats total;
  for (std::uint64_t first = 0; first < opt.items; first += opt.batch) {
    auto count = static_cast<std::size_t>(std::min<std::uint64_t>(opt.batch, opt.items - first));
    total.merge(pipeline::analyze(pipeline::read_batch(opt.seed, first, count)));
  }
  return total;
}

// -- the summary ------------------------------------------------------------------------------

void print_stage(const char* name, const stage_time& t, const char* note) {
  std::printf("  %-12s %8.2f s %9.2f s %9s   %s\n", name, seconds(t.busy), seconds(t.waiting),
              with_commas(t.batches).c_str(), note);
}

void print_summary(const run_report& r, const options& opt) {
  const auto& s = r.result;
  double wall = seconds(r.wall);
  std::printf("\nmode %s: processed %s lines (%.1f MB of log text) with %s in %.2f s: %.2f M "
              "lines/s, %.0f MB/s\n",
              opt.mode.c_str(), with_commas(s.lines).c_str(),
              static_cast<double>(s.text_bytes) / 1e6, describe_workers(opt).c_str(), wall,
              static_cast<double>(s.lines) / wall / 1e6,
              static_cast<double>(s.text_bytes) / wall / 1e6);

  std::printf("\n  %-12s %10s %11s %9s\n", "stage", "busy", "waiting", "batches");
  print_stage("source", r.source, "(waiting = work queue full: backpressure)");
  stage_time all;
  for (std::size_t i = 0; i < r.workers.size(); ++i) {
    auto name = "worker-" + std::to_string(i + 1);
    print_stage(name.c_str(), r.workers[i],
                i == 0 ? "(waiting = work queue empty or results full)" : "");
    all.busy += r.workers[i].busy;
    all.waiting += r.workers[i].waiting;
    all.batches += r.workers[i].batches;
  }
  if (r.workers.size() > 1) print_stage("workers", all, "(sum)");
  print_stage("aggregator", r.aggregator, "(waiting = results queue empty)");

  std::printf("\nresult\n");
  std::printf("  lines          %s, %s malformed\n", with_commas(s.lines).c_str(),
              with_commas(s.malformed).c_str());
  std::printf("  response size  %.2f GB\n", static_cast<double>(s.bytes) / 1e9);
  std::printf("  status        ");
  for (std::size_t code = 0; code < s.by_status.size(); ++code)
    if (s.by_status[code] != 0)
      std::printf(" %zu: %s", code, with_commas(s.by_status[code]).c_str());
  std::printf("\n  methods       ");
  for (const auto& [method, n] : s.by_method)
    std::printf(" %s: %s", method.c_str(), with_commas(n).c_str());
  std::printf("\n  latency        p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms\n",
              static_cast<double>(s.latency.percentile(0.50)) / 1e3,
              static_cast<double>(s.latency.percentile(0.95)) / 1e3,
              static_cast<double>(s.latency.percentile(0.99)) / 1e3,
              static_cast<double>(s.latency.max()) / 1e3);
  auto busiest = std::max_element(s.by_hour.begin(), s.by_hour.end());
  std::printf("  busiest hour   %02td:00 (%s requests)\n", busiest - s.by_hour.begin(),
              with_commas(*busiest).c_str());

  std::printf("\n  %-24s %12s %12s %10s\n", "route", "requests", "mean ms", "5xx");
  std::vector<std::pair<std::string, pipeline::route_stats>> routes(s.by_route.begin(),
                                                                    s.by_route.end());
  std::sort(routes.begin(), routes.end(),
            [](const auto& a, const auto& b) { return a.second.requests > b.second.requests; });
  for (const auto& [route, rs] : routes)
    std::printf("  %-24s %12s %12.2f %10s\n", route.c_str(), with_commas(rs.requests).c_str(),
                rs.requests == 0
                    ? 0.0
                    : static_cast<double>(rs.latency_us) / static_cast<double>(rs.requests) / 1e3,
                with_commas(rs.server_errors).c_str());

  std::vector<std::pair<std::string, std::uint64_t>> clients(s.by_client.begin(),
                                                             s.by_client.end());
  auto top = std::min<std::size_t>(3, clients.size());
  std::partial_sort(clients.begin(), clients.begin() + static_cast<std::ptrdiff_t>(top),
                    clients.end(),
                    [](const auto& a, const auto& b) { return a.second > b.second; });
  std::printf("\n  clients        %s distinct; busiest:", with_commas(clients.size()).c_str());
  for (std::size_t i = 0; i < top; ++i)
    std::printf(" %s (%s)", clients[i].first.c_str(), with_commas(clients[i].second).c_str());
  std::printf("\n  checksum       %016" PRIx64 "\n", s.checksum);
}

// Names the parts of two results that differ (the self-check's diagnosis).
void print_differences(const pipeline::log_stats& got, const pipeline::log_stats& want) {
  auto field = [](const char* name, bool same) {
    if (!same) std::printf("  differs: %s\n", name);
  };
  field("lines", got.lines == want.lines);
  field("text size", got.text_bytes == want.text_bytes);
  field("malformed", got.malformed == want.malformed);
  field("response size", got.bytes == want.bytes);
  field("checksum", got.checksum == want.checksum);
  field("status counts", got.by_status == want.by_status);
  field("hour counts", got.by_hour == want.by_hour);
  field("methods", got.by_method == want.by_method);
  field("routes", got.by_route == want.by_route);
  field("clients", got.by_client == want.by_client);
  field("latency histogram", got.latency == want.latency);
}

} // namespace

int main(int argc, char** argv) {
  // The runtime parses the command line into the configuration, and then owns it. (It sits in an
  // optional only so that a bad command line is reported as such, not as an uncaught exception.)
  auto config = std::make_unique<pipeline_config>();
  const options& opt = config->opt;
  std::optional<tandem::runtime> rt;
  try {
    rt.emplace(std::move(config), argc, argv);
  } catch (const tandem::value_error& e) {
    std::fprintf(stderr, "pipeline: %s\n", e.what());
    return 2;
  }
  if (rt->help_printed()) {
    std::fputs(about, stderr);
    return 0;
  }
  if (const char* problem = invalid(opt)) {
    std::fprintf(stderr, "pipeline: %s (see --help)\n", problem);
    return 2;
  }
  if (!rt->remainder().empty()) {
    std::fprintf(stderr, "pipeline: unexpected argument '%s' (see --help)\n",
                 rt->remainder().front().c_str());
    return 2;
  }

  std::printf("tandem pipeline: %s lines, seed %" PRIu64 ", %s, queues of %s batches of %zu "
              "lines\n",
              with_commas(opt.items).c_str(), opt.seed, describe_workers(opt).c_str(),
              opt.queue_size == 0 ? "unbounded" : std::to_string(opt.queue_size).c_str(),
              opt.batch);
  std::fflush(stdout);

  auto report = opt.mode == "processes" ? run_processes(opt) : run_threads(opt);
  if (report.failure) {
    try {
      std::rethrow_exception(report.failure);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "pipeline: a stage failed: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "pipeline: a stage failed with an unknown exception\n");
    }
    return 1;
  }
  print_summary(report, opt);

  // The self-check: the same stages in one thread must give exactly the same statistics. Any lost,
  // duplicated or corrupted batch, or a merge that depends on the order, shows up here.
  auto t0 = clock_type::now();
  auto expected = run_single_threaded(opt);
  auto single = seconds(clock_type::now() - t0);
  bool ok = report.result == expected && report.result.lines == opt.items;
  std::printf(
      "\nself-check: %s\n            (one thread: %.2f s; the pipeline: %.2f s, a speed-up of "
      "%.2fx with %u CPUs)\n",
      ok ? "passed, the result equals that of a single-threaded run"
         : "FAILED, the result differs from that of a single-threaded run",
      single, seconds(report.wall), single / seconds(report.wall),
      std::thread::hardware_concurrency());
  if (!ok) {
    print_differences(report.result, expected);
    return 1;
  }
  return 0;
}
