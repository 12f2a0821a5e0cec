#!/usr/bin/env bash
# Committed transactions per second through a single-validator chain on
# loopback: compute-abci against CometBFT's own kvstore, with the same
# CometBFT configuration (300 ms blocks, a mempool of 50,000) and the same
# load (each sender waits for CheckTx before its next transaction).
#
#   scripts/bench-chain.sh [TXS [SENDERS [RUNS]]]
#       TXS transactions (default 10000) from SENDERS concurrent senders
#       (default 100), measured RUNS times (default 1), kvstore and
#       compute-abci alternately
#
# Installs CometBFT if it is missing, builds the workspace, and runs
# tests/examples/chain_bench.rs, which prints a markdown table of the
# figures (progress goes to stderr). Every process it starts listens on
# 127.0.0.1 and is stopped when it ends. Run it on an otherwise idle machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh

scripts/install-cometbft.sh >&2
cargo build --workspace --bins --examples
exec "$CARGO_TARGET_DIR/debug/examples/chain_bench" "$@"
