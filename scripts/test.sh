#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test of the workspace.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests that need a tool install it here; with CI=true a missing tool fails the test.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
