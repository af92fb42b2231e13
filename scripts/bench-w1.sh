#!/usr/bin/env bash
# W1 (max durable throughput) and W2 (latency under load) of
# ../shared/brief/targets.md against one release `strata server`, in one run,
# next to the disk's own durable write bandwidth (fio, 256 KiB writes with an
# fdatasync after each) measured on the same disk:
#   1. cargo build --release -p strata;
#   2. fio (installed when missing) in the benchmark directory;
#   3. a fresh server on 127.0.0.1 (ephemeral port) with its data in that directory;
#   4. W1: `strata bench e2e` unthrottled: 16 partitions, 1 KiB records, 1 producer,
#      1 tailing consumer (one connection, a read session per partition), acks=fsync;
#      the broker's CPU-seconds and the bytes it took in, over the same window;
#   5. W2: `strata bench e2e --rate` at 10/25/50/75 % of W1's records/s;
#   6. a markdown report on stdout, with the issue goals PASS/FAIL.
# Progress goes to stderr. The measuring and the report are scripts/bench-w1.py.
#
# Usage: scripts/bench-w1.sh [directory on the disk under test]   (default target/bench-w1)
#
# Environment (defaults in brackets):
#   BENCH_DURATION [20s]  BENCH_WARMUP [5s]   W1 measured time and warm-up
#   W2_DURATION    [15s]  W2_WARMUP    [3s]   each W2 step
#   W2_PERCENTS    [10 25 50 75]              W2 steps, % of W1's records/s
#   FIO_RUNTIME    [10]                       seconds of fio
#   BENCH_ACKS     [fsync]                    --acks of every bench run
#   BENCH_EXTRA_ARGS []                       more flags for every `strata bench` run
#   BENCH_KEEP_DATA [0]                       1: keep the server's data directory
#   SKIP_BUILD     [0]                        1: use target/release/strata as it is
#   BENCH_HELPER   [bench-w1.py]              the measuring helper (bench-kafka.sh sets it)
# The data directory is a new mktemp directory under the benchmark directory,
# removed at the end; the script only ever stops the server it started (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

dir=${1:-target/bench-w1}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

log() { printf '[bench-w1 %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

server_pid=
helper_pid=
data=
cleanup() {
  local rc=$?
  if [[ -n $helper_pid ]] && kill -0 "$helper_pid" 2>/dev/null; then
    log "stopping the measuring helper (pid $helper_pid)"
    kill -TERM "$helper_pid" 2>/dev/null || true
    wait "$helper_pid" 2>/dev/null || true
  fi
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    log "stopping the server (pid $server_pid, SIGTERM)"
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      log "the server did not stop within 10 s: SIGKILL (pid $server_pid)"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ -n $data && ${BENCH_KEEP_DATA:-0} != 1 ]]; then
    rm -rf -- "$data"
  fi
  rm -f -- "$dir/fio.test"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Build.
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "cargo build --release -p strata"
  timeout --foreground 900 cargo build --release -p strata >&2
fi
strata=$repo/target/release/strata
[[ -x $strata ]] || { echo "error: $strata is missing" >&2; exit 1; }

# 2. fio.
if ! command -v fio >/dev/null; then
  log "installing fio"
  timeout --foreground 300 apt-get update -qq >&2 && timeout --foreground 300 apt-get install -y -qq fio >&2
fi

# 3. The server: fresh data, 127.0.0.1, an ephemeral port.
data=$(mktemp -d "$dir/data.XXXXXX")
log "starting strata server (data in $data)"
"$strata" server --listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 --data-dir "$data" \
  >"$data.stdout" 2>"$data.stderr" &
server_pid=$!
addr=
for _ in $(seq 1 300); do
  addr=$(sed -n 's#^strata listening on http://\([0-9.]*:[0-9]*\)$#\1#p' "$data.stdout" 2>/dev/null | head -n1)
  [[ -n $addr ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "error: the server exited; its log:" >&2
    cat "$data.stderr" >&2
    exit 1
  fi
  sleep 0.1
done
kafka_addr=$(sed -n 's#^strata kafka listening on \([0-9.]*:[0-9]*\)$#\1#p' "$data.stdout" | head -n1)
rm -f -- "$data.stdout"
[[ -n $addr ]] || { echo "error: the server printed no address within 30 s" >&2; exit 1; }
case $addr in
  127.0.0.1:*) ;;
  *) echo "error: the server listens on $addr, not 127.0.0.1" >&2; exit 1 ;;
esac
log "server pid $server_pid on http://$addr"

# 4-6. Measure and report (the helper never starts or stops the server). In the
# background and waited for, so that a signal reaches the EXIT trap at once.
status=0
helper=${BENCH_HELPER:-bench-w1.py}
helper_args=()
[[ $helper == bench-kafka.py ]] && helper_args=(--kafka "$kafka_addr")
timeout 600 python3 "$repo/scripts/$helper" \
  --strata "$strata" --server "http://$addr" --server-pid "$server_pid" \
  --dir "$dir" --data-dir "$data" "${helper_args[@]}" &
helper_pid=$!
wait "$helper_pid" || status=$?
helper_pid=
if [[ $status != 0 ]]; then
  echo "error: the benchmark failed (exit $status); server log: $data.stderr" >&2
  BENCH_KEEP_DATA=1
  exit "$status"
fi
rm -f -- "$data.stderr"
