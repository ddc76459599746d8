#!/usr/bin/env bash
# tandem's set-up and run script for a Debian bookworm machine.
#
#   scripts/run.sh pipeline [ARGS...]  install what is missing, build (release), run the flagship pipeline
#   scripts/run.sh test               install what is missing, build (dev), run the tests, then the
#                                     ThreadSanitizer run of tandem::primitives, then the fuzzers
#                                     for 10 s each
#   scripts/run.sh long               the full-size stress and soak tests (label long), and the
#                                     fuzzers for 60 s each
#   scripts/run.sh fuzz [long]        only the libFuzzer targets (clang-14): 10 s each, 60 s with long
#   scripts/run.sh asan               everything under AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/run.sh bench              build (release) and run the benchmark report
#   scripts/run.sh deps               only install the Debian packages
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(build-essential g++ cmake ninja-build ccache git python3
          libcaf-dev doctest-dev libboost-dev libbenchmark-dev clang-14 libclang-rt-14-dev)

install_deps() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "tandem: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
  fi
}

jobs=$(nproc 2>/dev/null || echo 2)

# build PRESET [TARGET...]: configure and build the preset (only TARGETs when given).
build() {
  local preset=$1
  shift
  cmake --preset "$preset" >/dev/null
  if [ $# -gt 0 ]; then
    cmake --build --preset "$preset" -j "$jobs" --target "$@"
  else
    cmake --build --preset "$preset" -j "$jobs"
  fi
}

cmd=${1:-test}
shift || true
case "$cmd" in
  deps)
    install_deps
    ;;
  pipeline)
    install_deps
    build release pipeline
    exec build/release/examples/pipeline/pipeline "$@"
    ;;
  test)
    install_deps
    build dev
    ctest --preset dev
    build tsan
    ctest --preset tsan
    build fuzz
    ctest --preset fuzz
    ;;
  long)
    install_deps
    build release
    ctest --preset long
    build fuzz
    ctest --preset fuzz-long
    ;;
  fuzz)
    install_deps
    build fuzz
    if [ "${1:-}" = long ]; then ctest --preset fuzz-long; else ctest --preset fuzz; fi
    ;;
  asan)
    install_deps
    build asan
    ctest --preset asan
    ;;
  bench)
    install_deps
    build release tandem_bench_threading tandem_bench_actor tandem_bench_mp
    exec python3 bench/report.py --build build/release "$@"
    ;;
  *)
    echo "usage: scripts/run.sh {pipeline|test|long|fuzz [long]|asan|bench|deps}" >&2
    exit 2
    ;;
esac
