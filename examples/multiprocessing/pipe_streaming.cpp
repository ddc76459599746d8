// Streaming with tandem::mp::pipe (Python's multiprocessing.Pipe): producer processes stream
// records and bulk data through one-way pipes to consumers that process them as they arrive.
//
//   1. objects: a sensor process streams readings (a struct with an inspect overload) to a
//      consumer process, which summarizes them as they arrive and reports back
//   2. bulk data: a process streams a generated file in chunks with send_bytes; the main process
//      receives them with recv_bytes_into into one reused buffer (no allocation per chunk)
//   3. many producers: mp::wait over the pipes of four sensors and the sentinel of one of them,
//      which dies mid-stream; what it sent before it died still arrives
//   4. bad input: a message of another type, garbage bytes and a message longer than the buffer
//      are typed errors, never undefined behaviour, and the pipe stays usable
//
// End of stream is end of file: when every process holding the write end has closed it (or has
// exited, which closes it), recv() throws eof_error once every message sent was read.
//
//   Python                                     tandem
//   r, w = Pipe(duplex=False)                  auto [r, w] = mp::pipe(false);
//   Process(target=f, args=(w,)).start()       mp::process p{f, std::move(w)}; p.start();
//   w.send(obj); obj = r.recv()                w.send(obj); auto obj = r.recv<reading>();
//   w.send_bytes(buf, offset, size)            w.send_bytes(std::span{buf}, offset, size);
//   n = r.recv_bytes_into(buf)                 std::size_t n = r.recv_bytes_into(buf);
//   except BufferTooShort as e: e.args[0]      catch (tandem::buffer_too_short_error& e)
//   e.message() r.poll(0.05)                               bool ready = r.poll(50ms); wait([r1, r2,
//   p.sentinel], timeout=10)     mp::wait({r1, r2, mp::waitable{p.sentinel()}}, 10s) except
//   EOFError                            catch (const tandem::eof_error&) except
//   pickle.UnpicklingError              catch (const tandem::bad_message_error&)
//
// The parent's copy of a connection passed to a process is closed by start(): only the child
// holds that end then, so the reader sees end of file when the child is done with it.

#include <tandem/error.hpp>
#include <tandem/mp/pipe.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/wait.hpp>
#include <tandem/runtime.hpp>

#include "check.hpp"

#include <caf/meta/type_name.hpp>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace mp = tandem::mp;
using clock_type = std::chrono::steady_clock;

namespace {

// -- the records ------------------------------------------------------------------------------

/// One measurement of a temperature sensor.
struct reading {
  std::uint32_t sensor = 0;
  std::uint64_t seq = 0;
  std::int64_t time_ms = 0;
  double celsius = 0;
};

// The inspect overload makes `reading` a message: send(r) and recv<reading>() serialize it.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reading& x) {
  return f(caf::meta::type_name("reading"), x.sensor, x.seq, x.time_ms, x.celsius);
}

/// What a consumer reports when the stream has ended.
struct stream_summary {
  std::uint64_t count = 0;
  std::uint64_t checksum = 0; // order-independent: the sum of every reading's hash
  std::uint64_t alarms = 0;   // readings above alarm_celsius
  double min = 0;
  double max = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stream_summary& x) {
  return f(caf::meta::type_name("stream_summary"), x.count, x.checksum, x.alarms, x.min, x.max);
}

/// What an old firmware sends: another type, so recv<reading>() refuses it.
struct reading_v1 {
  std::uint32_t sensor = 0;
  float celsius = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reading_v1& x) {
  return f(caf::meta::type_name("reading_v1"), x.sensor, x.celsius);
}

constexpr double alarm_celsius = 24.0;

std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  return z ^ (z >> 31);
}

// Reading `seq` of sensor `sensor`: a pure function, so the main process knows what to expect.
reading make_reading(std::uint32_t sensor, std::uint64_t seq) {
  double noise = static_cast<double>(mix(seq * 31 + sensor) >> 11) * 0x1.0p-53 - 0.5;
  double celsius =
      20.0 + 4.5 * std::sin(static_cast<double>(seq) / 40.0 + static_cast<double>(sensor)) + noise;
  return {sensor, seq, static_cast<std::int64_t>(seq) * 100, celsius};
}

std::uint64_t hash_of(const reading& r) {
  return mix((std::uint64_t{r.sensor} << 48) ^ r.seq ^
             mix(std::bit_cast<std::uint64_t>(r.celsius)) ^ static_cast<std::uint64_t>(r.time_ms));
}

void add(stream_summary& s, const reading& r) {
  s.min = s.count == 0 ? r.celsius : std::min(s.min, r.celsius);
  s.max = s.count == 0 ? r.celsius : std::max(s.max, r.celsius);
  ++s.count;
  s.checksum += hash_of(r);
  s.alarms += r.celsius > alarm_celsius ? 1 : 0;
}

stream_summary expected_summary(std::uint32_t sensor, std::uint64_t count) {
  stream_summary s;
  for (std::uint64_t i = 0; i < count; ++i) add(s, make_reading(sensor, i));
  return s;
}

bool operator==(const stream_summary& a, const stream_summary& b) {
  return a.count == b.count && a.checksum == b.checksum && a.alarms == b.alarms;
}

// -- the generated file -----------------------------------------------------------------------

// Bytes [offset, offset + out.size()) of a generated file: a pure function of (seed, offset).
void file_bytes(std::uint64_t seed, std::uint64_t offset, std::span<std::byte> out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto pos = offset + i;
    out[i] = static_cast<std::byte>(mix(seed ^ (pos / 8)) >> (8 * (pos % 8)));
  }
}

std::uint64_t fnv1a(std::uint64_t h, std::span<const std::byte> bytes) {
  for (std::byte b : bytes) h = (h ^ std::to_integer<std::uint64_t>(b)) * 0x100000001b3;
  return h;
}

constexpr std::uint64_t fnv_basis = 0xcbf29ce484222325;

/// Sent before the chunks of a file, as an object.
struct file_info {
  std::string name;
  std::uint64_t size = 0;
  std::uint32_t chunk = 0; // the largest chunk that follows
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, file_info& x) {
  return f(caf::meta::type_name("file_info"), x.name, x.size, x.chunk);
}

// -- process targets --------------------------------------------------------------------------

// Streams `count` readings, then returns: the process exits, which closes `out`, and the reader
// sees end of file after the last reading.
void sensor(std::uint32_t id, std::uint64_t count, mp::connection out) {
  for (std::uint64_t i = 0; i < count; ++i) out.send(make_reading(id, i));
}

// Processes readings as they arrive until end of file, then reports what it saw.
void monitor(mp::connection in, mp::connection report) {
  stream_summary s;
  try {
    for (;;) {
      auto r = in.recv<reading>(); // blocks until the next reading, eof_error after the last
      add(s, r);
    }
  } catch (const tandem::eof_error&) {
    // The sensor is done: every reading it sent was read.
  }
  report.send(s);
}

// Streams a generated file: a header object, then chunks of bytes cut from a larger block.
void file_reader(std::uint64_t seed, std::uint64_t size, std::uint32_t chunk, mp::connection out) {
  out.send(file_info{"access.log.gz", size, chunk});
  std::vector<std::byte> block(std::size_t{chunk} * 16); // "read" 16 chunks from disk at once
  for (std::uint64_t offset = 0; offset < size; offset += block.size()) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), size - offset));
    file_bytes(seed, offset, std::span{block}.first(n));
    for (std::size_t at = 0; at < n; at += chunk)
      out.send_bytes(block, at, std::min<std::size_t>(chunk, n - at)); // one message per chunk
  }
}

// Streams its readings, closes its end (the stream is over), then keeps running until the main
// process closes `hold`: end of file is the end of the stream, not of the process.
void closing_sensor(std::uint32_t id, std::uint64_t count, mp::connection out,
                    mp::connection hold) {
  for (std::uint64_t i = 0; i < count; ++i) out.send(make_reading(id, i));
  out.close();
  try {
    (void)hold.recv_bytes();
  } catch (const tandem::eof_error&) {
  }
}

// Streams `count` readings, then loses power.
void dying_sensor(std::uint32_t id, std::uint64_t count, mp::connection out) {
  for (std::uint64_t i = 0; i < count; ++i) out.send(make_reading(id, i));
  std::raise(SIGKILL);
}

// A sensor with old firmware and a flaky link: a message of another type, garbage, a good
// reading, then a message longer than the receiver's buffer.
void old_firmware(mp::connection out) {
  out.send(reading_v1{7, 21.5F});
  const char garbage[] = "TEMP=21.5C\n";
  out.send_bytes(std::as_bytes(std::span{garbage}));
  out.send(make_reading(7, 0));
  std::vector<std::byte> big(300, std::byte{0x2a});
  out.send_bytes(big);
}

double seconds(clock_type::duration d) {
  return std::chrono::duration<double>(d).count();
}

// -- the sections -----------------------------------------------------------------------------

void objects_between_processes() {
  std::printf("1. a sensor process streams readings to a monitor process\n");
  constexpr std::uint64_t n = 50'000;
  auto [readings_in, readings_out] = mp::pipe(false); // first the read end, then the write end
  auto [report_in, report_out] = mp::pipe(false);
  mp::process producer{{.name = "sensor-1"}, sensor, std::uint32_t{1}, n, std::move(readings_out)};
  mp::process consumer{{.name = "monitor"}, monitor, std::move(readings_in), std::move(report_out)};
  auto t0 = clock_type::now();
  consumer.start();
  producer.start(); // both pipe ends now live only in the children
  auto got = report_in.recv<stream_summary>();
  auto elapsed = seconds(clock_type::now() - t0);
  producer.join();
  consumer.join();

  auto want = expected_summary(1, n);
  std::printf("   the monitor saw %" PRIu64 " readings (%.1f to %.1f C, %" PRIu64
              " above %.0f C), %.0f k readings/s\n",
              got.count, got.min, got.max, got.alarms, alarm_celsius,
              static_cast<double>(got.count) / elapsed / 1e3);
  example::check(got == want, "the monitor received every reading once, intact");
  example::check(producer.exitcode() == 0 && consumer.exitcode() == 0,
                 "both processes exit with 0");
}

void bulk_bytes() {
  std::printf("\n2. a file in chunks: send_bytes, and recv_bytes_into one reused buffer\n");
  constexpr std::uint64_t seed = 2024;
  constexpr std::uint64_t size = (16u << 20) + 12'345; // the last chunk is a short one
  constexpr std::uint32_t chunk = 64 << 10;
  auto [in, out] = mp::pipe(false);
  mp::process reader{{.name = "file-reader"}, file_reader, seed, size, chunk, std::move(out)};

  bool early = in.poll(20ms); // nothing was sent yet: the producer has not even started
  std::printf("   before the producer starts: poll(20ms) -> %s\n", early ? "true" : "false");
  example::check(!early, "poll times out on a pipe nobody wrote to");

  reader.start();
  auto t0 = clock_type::now();
  bool ready = in.poll(10s);
  example::check(ready, "poll returns true once the producer sent something");
  auto info = in.recv<file_info>();
  std::printf("   receiving %s: %" PRIu64 " bytes in chunks of at most %u\n", info.name.c_str(),
              info.size, info.chunk);

  std::vector<std::byte> buffer(info.chunk); // allocated once, reused for every chunk
  std::uint64_t received = 0;
  std::uint64_t chunks = 0;
  std::uint64_t hash = fnv_basis;
  try {
    for (;;) {
      std::size_t got = in.recv_bytes_into(buffer);
      hash = fnv1a(hash, std::span{buffer}.first(got));
      received += got;
      ++chunks;
    }
  } catch (const tandem::eof_error&) {
    // The producer exited: its end is closed and every chunk was read.
  }
  auto elapsed = seconds(clock_type::now() - t0);
  reader.join();

  std::vector<std::byte> whole(size);
  file_bytes(seed, 0, whole);
  std::printf("   %" PRIu64 " chunks, %" PRIu64 " bytes, %.0f MB/s, checksum %016" PRIx64 "\n",
              chunks, received, static_cast<double>(received) / elapsed / 1e6, hash);
  example::check(received == size && chunks == (size + chunk - 1) / chunk,
                 "every chunk arrived, each as one message");
  example::check(hash == fnv1a(fnv_basis, whole), "the bytes arrived intact and in order");
}

void many_producers() {
  std::printf("\n3. four sensors, one wait: mp::wait over their pipes and a process sentinel\n");
  constexpr std::uint64_t n = 300;
  constexpr std::uint64_t before_death = 120;
  constexpr std::size_t sensors = 4;

  std::vector<mp::connection> readers;
  std::vector<mp::process> procs;
  auto [hold_in, hold_out] = mp::pipe(false); // sensor-1 runs until the main process closes it
  for (std::uint32_t id = 1; id <= sensors; ++id) {
    auto [in, out] = mp::pipe(false);
    readers.push_back(std::move(in));
    mp::process::options opts{.name = "sensor-" + std::to_string(id)};
    if (id == 1)
      procs.emplace_back(std::move(opts), closing_sensor, id, n, std::move(out),
                         std::move(hold_in));
    else if (id == sensors)
      procs.emplace_back(std::move(opts), dying_sensor, id, before_death, std::move(out));
    else
      procs.emplace_back(std::move(opts), sensor, id, n, std::move(out));
  }
  for (auto& p : procs) p.start();
  mp::process& dying = procs.back();

  std::vector<stream_summary> got(sensors);
  std::vector<bool> open(sensors, true);
  bool watching = true; // the dying sensor's sentinel
  bool first_closed_alive = false;
  std::uint64_t wakeups = 0;
  while (watching || std::find(open.begin(), open.end(), true) != open.end()) {
    // The objects to wait for: the open pipes, then the sentinel while it is of interest.
    std::vector<mp::waitable> objects;
    std::vector<std::size_t> which; // objects[k] is readers[which[k]], or the sentinel
    for (std::size_t i = 0; i < sensors; ++i)
      if (open[i]) {
        objects.emplace_back(readers[i]);
        which.push_back(i);
      }
    if (watching) {
      objects.emplace_back(dying.sentinel());
      which.push_back(sensors);
    }
    auto ready = mp::wait(objects, 10s);
    ++wakeups;
    if (ready.empty()) {
      example::check(false, "a sensor stream makes progress within 10 s");
      break;
    }
    for (std::size_t k : ready) {
      std::size_t i = which[k];
      if (i == sensors) {
        dying.join();
        std::printf("   the sentinel of %s is ready: it died with exit code %d\n",
                    dying.name().c_str(), dying.exitcode().value_or(0));
        watching = false;
        continue;
      }
      try {
        add(got[i], readers[i].recv<reading>());
      } catch (const tandem::eof_error&) {
        open[i] = false;
        readers[i].close();
        std::printf("   end of stream from %s after %" PRIu64 " readings\n",
                    procs[i].name().c_str(), got[i].count);
        if (i == 0) {
          first_closed_alive = procs[0].is_alive();
          hold_out.close(); // now sensor-1 may exit
        }
      }
    }
  }
  for (auto& p : procs) p.join();

  std::printf("   %" PRIu64 " wake-ups for %" PRIu64 " readings\n", wakeups,
              got[0].count + got[1].count + got[2].count + got[3].count);
  example::check(first_closed_alive, "end of file arrives when the writer closes its end, even "
                                     "while the writer's process still runs");
  for (std::uint32_t id = 1; id < sensors; ++id)
    example::check(got[id - 1] == expected_summary(id, n), "every reading of a sensor arrives");
  example::check(got[sensors - 1] == expected_summary(sensors, before_death),
                 "what a sensor sent before it died still arrives, then end of file");
  example::check(dying.exitcode() == -SIGKILL, "the sentinel reports the death (-9)");
}

void bad_input() {
  std::printf("\n4. bad input is a typed error, and the pipe stays usable\n");
  auto [in, out] = mp::pipe(false);
  mp::process firmware{{.name = "old-firmware"}, old_firmware, std::move(out)};
  firmware.start();

  int bad = 0;
  for (int i = 0; i < 2; ++i) {
    try {
      (void)in.recv<reading>();
      example::check(false, "a message that is not a reading is refused");
    } catch (const tandem::bad_message_error& e) {
      ++bad;
      std::printf("   recv<reading>(): bad_message_error: %s\n", e.what());
    }
  }
  auto good = in.recv<reading>(); // each bad message was consumed whole
  std::printf("   recv<reading>(): sensor %u, %.2f C\n", good.sensor, good.celsius);
  example::check(bad == 2 && hash_of(good) == hash_of(make_reading(7, 0)),
                 "after two bad messages the next reading arrives intact");

  std::vector<std::byte> small(64);
  try {
    (void)in.recv_bytes_into(small);
    example::check(false, "a message longer than the buffer is refused");
  } catch (const tandem::buffer_too_short_error& e) {
    std::printf("   recv_bytes_into(64 bytes): buffer_too_short_error carrying all %zu bytes\n",
                e.message().size());
    example::check(e.message().size() == 300, "buffer_too_short_error carries the whole message");
  }
  try {
    (void)in.recv<reading>();
    example::check(false, "end of file follows the last message");
  } catch (const tandem::eof_error&) {
    std::printf("   then eof_error: the firmware process is done\n");
  }
  firmware.join();
  example::check(firmware.exitcode() == 0, "the firmware process exits with 0");
}

} // namespace

int main(int argc, char** argv) {
  // First thing in main: a child process is this program again, and turns into its target here.
  tandem::runtime rt{argc, argv};
  std::setvbuf(stdout, nullptr, _IOLBF, 0); // parent and children share stdout: keep lines whole

  objects_between_processes();
  bulk_bytes();
  many_producers();
  bad_input();
  return example::exit_status();
}
