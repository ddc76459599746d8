// tandem: the command-line tool.
//
//   tandem shm ls [--prefix P]                  list tandem shared-memory segments
//   tandem shm rm --stale [--prefix P] [-n]     remove those whose owner process is dead
//
// Only files in /dev/shm whose header carries tandem's magic number are shown or removed; other
// programs' files are never opened for writing. Exit codes: 0 success, 1 a removal failed,
// 2 a usage error.
#include <tandem/mp/detail/shm_named.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace {

namespace d = tandem::mp::detail;

constexpr const char* usage_text =
    "usage: tandem <command> [options]\n"
    "\n"
    "commands:\n"
    "  shm ls [--prefix P]\n"
    "      List tandem's shared-memory segments in /dev/shm: name, owner pid, whether the owner\n"
    "      is alive, size (the bytes the creator asked for) and age.\n"
    "  shm rm --stale [--prefix P] [--dry-run|-n]\n"
    "      Remove the segments whose owner process is dead (killed before its tracker could\n"
    "      remove them, or created untracked). Segments of live owners, segments of another\n"
    "      layout version, and files that are not tandem segments are never touched.\n"
    "\n"
    "options:\n"
    "  --prefix P     only segments whose name starts with P\n"
    "  --dry-run, -n  say what would be removed, remove nothing\n"
    "  --help, -h     this text\n"
    "\n"
    "exit status: 0 success, 1 a removal failed, 2 a usage error\n";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "tandem: %s\nTry 'tandem --help'.\n", what.c_str());
  return 2;
}

std::string human_size(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string human_age(std::uint64_t created_boot_ns) {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  auto now = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
             static_cast<std::uint64_t>(ts.tv_nsec);
  if (created_boot_ns == 0 || created_boot_ns > now) return "-";
  auto s = (now - created_boot_ns) / 1'000'000'000u;
  if (s < 120) return std::to_string(s) + "s";
  if (s < 120 * 60) return std::to_string(s / 60) + "m";
  if (s < 48 * 3600) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

std::string state_of(const d::shm_segment_info& s) {
  std::string st = s.owner_alive ? "alive" : "dead";
  if (!s.ready) st += s.owner_alive ? ",starting" : ",unfinished";
  if (s.version != d::shm_named_version) st += ",v" + std::to_string(s.version);
  return st;
}

// A tandem segment the tool may remove: its owner is dead, and its layout is one it knows.
bool stale(const d::shm_segment_info& s) {
  // A header without an owner yet belongs to a creator in the middle of making it.
  return s.owner_pid > 0 && !s.owner_alive && s.version == d::shm_named_version;
}

struct options {
  std::string prefix;
  bool stale = false;
  bool dry_run = false;
};

int shm_ls(const options& o) {
  auto segments = d::list_shm_segments(o.prefix);
  std::size_t width = 4;
  for (const auto& s : segments) width = std::max(width, s.name.size());
  std::printf("%-*s  %8s  %-16s  %10s  %5s\n", static_cast<int>(width), "NAME", "OWNER", "STATE",
              "SIZE", "AGE");
  for (const auto& s : segments)
    std::printf("%-*s  %8d  %-16s  %10s  %5s\n", static_cast<int>(width), s.name.c_str(),
                static_cast<int>(s.owner_pid), state_of(s).c_str(), human_size(s.user_size).c_str(),
                human_age(s.created_boot_ns).c_str());
  return 0;
}

int shm_rm(const options& o) {
  if (!o.stale)
    return usage_error("shm rm: say --stale: only segments whose owner is dead are removed");
  int status = 0;
  std::size_t removed_count = 0;
  for (const auto& s : d::list_shm_segments(o.prefix)) {
    if (!stale(s)) continue;
    if (o.dry_run) {
      std::printf("would remove %s (owner %d is dead)\n", s.name.c_str(),
                  static_cast<int>(s.owner_pid));
      continue;
    }
    bool removed = false;
    if (int err = d::remove_stale_shm_segment(s, &removed); err != 0) {
      std::fprintf(stderr, "tandem: cannot remove %s: %s\n", s.name.c_str(), std::strerror(err));
      status = 1;
    } else if (removed) {
      std::printf("removed %s (owner %d is dead)\n", s.name.c_str(), static_cast<int>(s.owner_pid));
      ++removed_count;
    }
  }
  if (!o.dry_run)
    std::printf("%zu stale segment%s removed\n", removed_count, removed_count == 1 ? "" : "s");
  return status;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (auto a : args)
    if (a == "--help" || a == "-h") {
      std::fputs(usage_text, stdout);
      return 0;
    }
  if (args.empty()) return usage_error("no command given");
  if (args[0] != "shm") return usage_error("unknown command '" + std::string{args[0]} + "'");
  if (args.size() < 2) return usage_error("shm: say ls or rm");
  std::string_view sub = args[1];
  options o;
  for (std::size_t i = 2; i < args.size(); ++i) {
    auto a = args[i];
    if (a == "--prefix") {
      if (i + 1 >= args.size()) return usage_error("--prefix needs a value");
      o.prefix = std::string{args[++i]};
    } else if (a.starts_with("--prefix=")) {
      o.prefix = std::string{a.substr(9)};
    } else if (a == "--stale" && sub == "rm") {
      o.stale = true;
    } else if ((a == "--dry-run" || a == "-n") && sub == "rm") {
      o.dry_run = true;
    } else {
      return usage_error("shm " + std::string{sub} + ": unknown option '" + std::string{a} + "'");
    }
  }
  try {
    if (sub == "ls") return shm_ls(o);
    if (sub == "rm") return shm_rm(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: %s\n", e.what());
    return 1;
  }
  return usage_error("shm: unknown subcommand '" + std::string{sub} + "' (say ls or rm)");
}
