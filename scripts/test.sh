#!/usr/bin/env bash
# Runs every test of the project: installs what the tests need, checks
# formatting and lints (warnings are errors), builds the binaries the
# integration tests start, and runs the whole workspace's tests (unit,
# scenario, property and integration tests with real CometBFT).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh

scripts/setup.sh

echo "checking formatting (cargo fmt --all --check)"
cargo fmt --all --check
echo "linting (cargo clippy --workspace --all-targets -- -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

# The wire specification checked outside Rust: Debian's Python, which has
# PyNaCl from python3-nacl (a python3 earlier on PATH may not).
echo "checking the golden vectors in Python (scripts/check-vectors.py)"
/usr/bin/python3 scripts/check-vectors.py
echo "checking that no modules import each other in a circle"
/usr/bin/python3 scripts/check-import-cycles.py abci-app/src sandbox/src sandbox/worker/src

echo "building (target directory: $CARGO_TARGET_DIR)"
cargo build --workspace --bins
echo "testing (cargo test --workspace)"
cargo test --workspace "$@"
