#!/usr/bin/env bash
# W1 over the Kafka protocol (kcat, i.e. librdkafka) next to W1 over gRPC
# (`strata bench e2e`), against one release `strata server`, in one run; a
# markdown report on stdout (the measuring is scripts/bench-kafka.py). Same
# set-up, environment and cleanup as scripts/bench-w1.sh, which it runs.
#
# Usage: scripts/bench-kafka.sh [directory on the disk under test]   (default target/bench-kafka)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v kcat >/dev/null; then
  timeout --foreground 300 apt-get update -qq >&2 && timeout --foreground 300 apt-get install -y -qq kcat >&2
fi
BENCH_HELPER=bench-kafka.py exec scripts/bench-w1.sh "${1:-target/bench-kafka}"
