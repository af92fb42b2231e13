#!/usr/bin/env bash
# Durable append throughput of strata-log against the disk's own durable
# write bandwidth, measured in one run on the same disk:
#   1. cargo bench -p strata-log (criterion): each case's throughput and its
#      average bytes per fdatasync (one fdatasync covers several writes);
#   2. fio sequential writes with an fdatasync after every write, at 256 KiB
#      and at each case's bytes per fdatasync, in the same directory.
# Prints a markdown table of the ratios (the figures of docs/benchmarks.md).
#
# Usage: scripts/bench-log.sh [directory on the disk under test]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/bench-disk}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

if ! command -v fio >/dev/null; then
  apt-get update -qq && apt-get install -y -qq fio >/dev/null
fi

log=$(mktemp)
STRATA_BENCH_DIR="$dir" cargo bench -p strata-log --bench log -- --noplot 2>&1 | tee "$log" >&2

# MiB/s of sequential writes of $1 bytes (rounded up to 4 KiB), fdatasync after each.
fio_mib_s() {
  local bs=$(( ($1 + 4095) / 4096 * 4096 ))
  fio --name=w --filename="$dir/fio.test" --size=1g --rw=write --bs="$bs" --ioengine=sync \
    --fdatasync=1 --runtime=10 --time_based --output-format=terse --terse-version=3 </dev/null 2>/dev/null |
    awk -F';' '{ printf "%.0f", $48 / 1024 }'
  rm -f "$dir/fio.test"
}

# One line per case: partitions records_per_batch bytes_per_fdatasync MiB/s (criterion median).
cases=$(python3 - "$log" <<'PY'
import json, pathlib, re, sys
text = open(sys.argv[1]).read()
root = pathlib.Path("target/criterion/durable_append_1KiB")
for m in re.finditer(r"journal: partitions=(\d+) records_per_batch=(\d+) avg_write_bytes=\d+ avg_fsync_bytes=(\d+)", text):
    parts, recs, size = m[1], m[2], m[3]
    case = root / f"{recs}_records_per_batch" / f"{parts}_partitions" / "new"
    median_ns = json.load(open(case / "estimates.json"))["median"]["point_estimate"]
    per_iter = json.load(open(case / "benchmark.json"))["throughput"]["Bytes"]
    print(parts, recs, size, round(per_iter / (median_ns / 1e9) / 2**20))
PY
)

fio256=$(fio_mib_s 262144)
echo
echo "| partitions | records/batch | strata-log MiB/s | bytes per fdatasync | fio MiB/s at that write size | ratio | fio MiB/s at 256 KiB |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
while read -r parts recs size mib; do
  fio=$(fio_mib_s "$size")
  ratio=$(python3 -c "print(f'{$mib / $fio:.0%}')")
  echo "| $parts | $recs | $mib | $(( size / 1024 )) KiB | $fio | $ratio | $fio256 |"
done <<<"$cases"
rm -f "$log"
