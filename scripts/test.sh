#!/usr/bin/env bash
# Runs every test of the project: installs what the tests need, builds the
# binaries the integration tests start, and runs the whole workspace's tests
# (unit, scenario, property and integration tests with real CometBFT).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh

scripts/setup.sh
echo "building (target directory: $CARGO_TARGET_DIR)"
cargo build --workspace --bins
cargo test --workspace "$@"
