#!/usr/bin/env bash
# A long fault run of a 4-validator network on loopback: the fault test of
# .ci/run (tests/tests/four_validators_agree_through_crashes_a_halt_and_a_change_of_validators.rs)
# with many rounds of crashes and halts, repeated with fresh seeds.
#
#   scripts/soak.sh [ROUNDS [RUNS]]   ROUNDS per run (default 20), RUNS
#                                     runs one after the other (default 1)
#
# Each round kill -9s cometbft, compute-abci or both of a random validator
# six times, at random moments or at commit, then takes two of four
# validators down and brings them back. Every run ends with the checks of
# the test: one block and app hash per height on every node, a replay of
# the chain, every transaction on every node or on none, credits conserved.
# A failing run prints its seed; FAULT_SEED=<seed> scripts/soak.sh ROUNDS
# replays its choices. Each round takes about a minute on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh

rounds="${1:-20}"
runs="${2:-1}"
in_range() { [[ "$1" =~ ^[0-9]{1,4}$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 1000 ]; }
if ! in_range "$rounds"; then echo "error: ROUNDS must be 1 to 1000" >&2; exit 1; fi
if ! in_range "$runs"; then echo "error: RUNS must be 1 to 1000" >&2; exit 1; fi

cargo build --workspace --bins
for run in $(seq 1 "$runs"); do
  echo "soak run $run of $runs: $rounds round(s)"
  FAULT_ROUNDS="$rounds" cargo test --workspace \
    --test four_validators_agree_through_crashes_a_halt_and_a_change_of_validators \
    -- --nocapture
done
