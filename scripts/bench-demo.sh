#!/usr/bin/env bash
# The demo's job through the network against its replicated sandbox bound,
# in one run on this machine: starts a devnet of its own (in .bench-devnet,
# on ports of its own, reset first), runs scripts/demo.sh on it without its
# collusion part (it starts the three workers), submits the same job ROUNDS more times, and
# runs every replicated sandboxed run of it locally on this machine's
# cores (sandbox/examples/replicated_bound.rs) as often. For each round it
# prints the network's time (job submitted to every output verified), the
# CPU seconds each kind of process spent meanwhile, and the bound; then the
# median ratio. Everything it started is stopped at the end.
#
#   scripts/bench-demo.sh [ROUNDS]      (default 5)
#
# DEMO_HI, DEMO_TASKS and DEMO_CAPACITY size the job as for scripts/demo.sh.
# Run it on an otherwise idle machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh
rounds="${1:-5}"
hi="${DEMO_HI:-320000000}"
tasks="${DEMO_TASKS:-32}"
# A devnet apart from the one scripts/devnet.sh keeps, so that neither its
# state nor its processes' CPU mix with this run's.
export DEVNET_HOME="${BENCH_DEVNET_HOME:-$root/.bench-devnet}"
export DEVNET_RPC_PORT=36657 DEVNET_ABCI_PORT=36658 DEVNET_P2P_PORT=36656
export DEVNET_GRPC_PORT=19090 DEVNET_METRICS_PORT=19464
home="$DEVNET_HOME"
bin="$COMPUTE_BIN_DIR"

scripts/setup.sh >&2
cargo build --workspace --bins --examples >&2
scripts/devnet.sh reset >&2
stop() {
  kill $(cat "$home"/worker*.pid 2>/dev/null) 2>/dev/null || true
  rm -f "$home"/worker*.pid
  scripts/devnet.sh stop >&2
}
trap stop EXIT
DEMO_COLLUSION=0 scripts/demo.sh --keep >&2

# CPU seconds (user + system) of this devnet's processes, by kind.
cpu() {
  local tick pidfile pid kind
  tick="$(getconf CLK_TCK)"
  for pidfile in "$home"/cometbft.pid "$home"/compute-abci.pid "$home"/compute-node.pid "$home"/worker*.pid; do
    pid="$(cat "$pidfile" 2>/dev/null)" || continue
    kind="$(basename "$pidfile" .pid)"
    case "$kind" in worker*) kind=compute-sandbox ;; esac
    [ -r "/proc/$pid/stat" ] && echo "$kind $(awk '{ print $14 + $15 }' "/proc/$pid/stat")"
  done | awk -v tick="$tick" '{ t[$1] += $2 / tick } END { for (k in t) printf "%s %.2f\n", k, t[k] }' | sort
}

echo "| round | network (s) | bound (s) | ratio | sandbox workers CPU (s) | cometbft CPU (s) | compute-abci CPU (s) | compute-node CPU (s) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
ratios=()
for round in $(seq 1 "$rounds"); do
  before="$(cpu)"
  started=$(date +%s%N)
  "$bin/compute" --node "http://127.0.0.1:$DEVNET_RPC_PORT" \
    --gateway "http://127.0.0.1:$DEVNET_GRPC_PORT" \
    --genesis "$home/cometbft/config/genesis.json" --trust-store "$home/light.json" \
    job submit "$home/demo/primes.wasm" --inputs "$home/demo/inputs" \
    --key "$home/keys/demo.json" --replicas 3 --quorum 2 \
    --fuel 5000000000 --price 1 --out "$home/demo/bench-outputs" >/dev/null 2>"$home/bench-submit-$round.log" \
    || { echo "round $round: the job did not complete" >&2; tail -n 5 "$home/bench-submit-$round.log" >&2; exit 1; }
  network_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  after="$(cpu)"
  spent() { join <(echo "$before") <(echo "$after") | awk -v k="$1" '$1 == k { printf "%.2f", $3 - $2 }'; }
  bound_ms="$("$bin/examples/replicated_bound" --hi "$hi" --tasks "$tasks" \
    | sed -n 's/.*"replicated_wall_ms":\([0-9]*\).*/\1/p')"
  ratio="$(awk -v n="$network_ms" -v b="$bound_ms" 'BEGIN { printf "%.2f", n / b }')"
  ratios+=("$ratio")
  echo "| $round | $(awk -v n="$network_ms" 'BEGIN { printf "%.2f", n / 1000 }') | $(awk -v b="$bound_ms" 'BEGIN { printf "%.2f", b / 1000 }') | ${ratio}x | $(spent compute-sandbox) | $(spent cometbft) | $(spent compute-abci) | $(spent compute-node) |"
done
median="$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END { print r[int((NR + 1) / 2)] }')"
echo
echo "median ratio, network over the replicated sandbox bound: ${median}x"
