#!/usr/bin/env bash
# Durable append throughput of strata-log against the disk's own durable
# write bandwidth, measured in one run on the same disk:
#   1. cargo bench -p strata-log (criterion): each case's throughput and its
#      average bytes per fdatasync (one fdatasync covers several writes);
#   2. fio sequential writes with an fdatasync after every write, at 256 KiB
#      and at each case's bytes per fdatasync, in the same directory, both on
#      fresh data and as targets.md has it (overwriting a 1 GiB file).
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

# MiB/s of sequential writes of $1 bytes (rounded up to 4 KiB), fdatasync after
# each. $2 = overwrite: the command of ../shared/brief/targets.md (a 1 GiB file
# written over and over for 10 s); $2 = fresh: new data only (a file larger
# than 10 s can fill), which is what a log writes.
fio_mib_s() {
  local bs=$(( ($1 + 4095) / 4096 * 4096 )) shape
  if [ "$2" = overwrite ]; then shape="--size=1g --time_based"; else shape="--size=16g --fallocate=none"; fi
  # shellcheck disable=SC2086
  fio --name=w --filename="$dir/fio.test" $shape --rw=write --bs="$bs" --ioengine=sync \
    --fdatasync=1 --runtime=10 --output-format=terse --terse-version=3 </dev/null 2>/dev/null |
    awk -F';' '{ printf "%.0f", $48 / 1024 }'
  rm -f "$dir/fio.test"
}

# One line per case: partitions records_per_batch bytes_per_fdatasync, then the
# criterion median over all samples and over the later half (the larger
# samples, once the disk is past whatever its cache absorbs), in MiB/s.
cases=$(python3 - "$log" <<'PY'
import json, pathlib, re, statistics, sys
text = open(sys.argv[1]).read()
root = pathlib.Path("target/criterion/durable_append_1KiB")
for m in re.finditer(r"journal: partitions=(\d+) records_per_batch=(\d+) avg_write_bytes=\d+ avg_fsync_bytes=(\d+)", text):
    parts, recs, size = m[1], m[2], m[3]
    case = root / f"{recs}_records_per_batch" / f"{parts}_partitions" / "new"
    per_iter = json.load(open(case / "benchmark.json"))["throughput"]["Bytes"]
    sample = json.load(open(case / "sample.json"))
    rates = [i * per_iter / (t / 1e9) / 2**20 for i, t in zip(sample["iters"], sample["times"])]
    later = rates[len(rates) // 2:]
    print(parts, recs, size, round(statistics.median(rates)), round(statistics.median(later)))
PY
)

echo
echo "| partitions | records/batch | bytes per fdatasync | strata-log MiB/s (all samples) | strata-log MiB/s (later half) | fio fresh data | ratio (later half / fresh) | fio overwrite (targets.md) | ratio (all / overwrite) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
while read -r parts recs size all later; do
  fresh=$(fio_mib_s "$size" fresh)
  over=$(fio_mib_s "$size" overwrite)
  r1=$(python3 -c "print(f'{$later / $fresh:.0%}')")
  r2=$(python3 -c "print(f'{$all / $over:.0%}')")
  echo "| $parts | $recs | $(( size / 1024 )) KiB | $all | $later | $fresh | $r1 | $over | $r2 |"
done <<<"$cases"
echo
echo "fio at 256 KiB: fresh $(fio_mib_s 262144 fresh) MiB/s, overwrite $(fio_mib_s 262144 overwrite) MiB/s"
rm -f "$log"
