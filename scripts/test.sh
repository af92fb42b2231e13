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
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
