#!/usr/bin/env bash
# Settled task-replicas per second through a single-validator chain on
# loopback (CometBFT and compute-abci, 300 ms blocks), against the state
# machine alone replaying the same blocks in the same run.
#
#   scripts/bench-settle.sh [--workers N] [--capacity N] [--tasks N]
#                           [--tasks-per-job N] [--jobs-per-post N]
#                           [--assignments-per-block N]
#       N simulated workers (default 200) of capacity N each (default 64)
#       settle N tasks (default 20000) of quorum jobs (2 of 3 replicas) of
#       N tasks each (default 1000), posted N jobs per PostJobs (default
#       4); the chain draws replicas for at most N tasks a block (genesis
#       max_assignments_per_block, default 8192)
#
# Installs CometBFT if it is missing, builds the workspace, and runs
# tests/examples/settle_throughput.rs, which prints a markdown table of the
# figures (progress goes to stderr). Every process it starts listens on
# 127.0.0.1 and is stopped when it ends. Run it on an otherwise idle machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh

scripts/install-cometbft.sh >&2
cargo build --workspace --bins --examples
exec "$CARGO_TARGET_DIR/debug/examples/settle_throughput" "$@"
