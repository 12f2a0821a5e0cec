#!/usr/bin/env bash
# The demo. On a fresh machine it installs what is missing and builds; then
# it starts a local single-validator network (cometbft + compute-abci + the
# compute-node gateway), three workers (one started with --cheat), and
# submits a real job: counting the primes below 320,000,000 in 32 tasks,
# each run by 3 workers with a quorum of 2. It shows the job's progress,
# prints the verified result beside a count made locally, and shows through
# /abci_query that the cheat was caught and how reputations changed.
# Everything it started is stopped at the end, unless --keep is given.
#
#   scripts/demo.sh [--keep]
#
# Environment: DEMO_HI (default 320000000) and DEMO_TASKS (default 32) size
# the job; DEMO_CAPACITY (default 16 per core, at most 32) is the tasks each
# worker may hold at once (it runs one per core at a time, and must finish
# what it holds within the commit window); the devnet's ports are those of
# scripts/devnet.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh
keep=0
[ "${1:-}" = "--keep" ] && keep=1
hi="${DEMO_HI:-320000000}"
tasks="${DEMO_TASKS:-32}"
cores="$(nproc 2>/dev/null || echo 1)"
capacity="${DEMO_CAPACITY:-$(( cores * 16 < 32 ? cores * 16 : 32 ))}"

scripts/setup.sh
scripts/devnet.sh start
home="${DEVNET_HOME:-$root/.devnet}"
rpc="http://127.0.0.1:${DEVNET_RPC_PORT:-26657}"
gateway="http://127.0.0.1:${DEVNET_GRPC_PORT:-9090}"
bin="$COMPUTE_BIN_DIR"
# Reads are verified against headers the light client checks from this
# devnet's own genesis file; its trust store lives (and is reset) with it.
compute() {
  "$bin/compute" --node "$rpc" --gateway "$gateway" \
    --genesis "$home/cometbft/config/genesis.json" --trust-store "$home/light.json" "$@"
}
demo_dir="$home/demo"
mkdir -p "$demo_dir"

worker_running() { [ -f "$home/worker$1.pid" ] && kill -0 "$(cat "$home/worker$1.pid")" 2>/dev/null; }
stop_workers() {
  for i in 1 2 3; do
    if worker_running "$i"; then kill "$(cat "$home/worker$i.pid")" 2>/dev/null || true; fi
    rm -f "$home/worker$i.pid"
  done
}
cleanup() {
  stop_workers
  scripts/devnet.sh stop
}
[ "$keep" -eq 1 ] || trap cleanup EXIT

echo
echo "== three workers: keys, credits for their stake, and the worker service"
for i in 1 2 3; do
  key="$home/keys/worker$i.json"
  [ -f "$key" ] || compute keys new "$key" >/dev/null
  id="$(compute keys show "$key")"
  balance="$(compute --output json account "$id" | sed -n 's/.*"balance":\([0-9]*\).*/\1/p')"
  if [ "${balance:-0}" -lt 10000 ]; then
    compute transfer --key "$home/keys/demo.json" --to "$id" --amount 100000 >/dev/null
  fi
  if ! worker_running "$i"; then
    cheat=()
    [ "$i" -eq 3 ] && cheat=(--cheat)
    RUST_LOG="${RUST_LOG:-info}" nohup "$bin/compute-sandbox" --key "$key" --gateway "$gateway" \
      --home "$home/worker$i" --capacity "$capacity" --stake 10000 "${cheat[@]}" \
      >"$home/worker$i.out" 2>>"$home/worker$i.log" &
    echo $! >"$home/worker$i.pid"
  fi
done
for i in 1 2 3; do
  for _ in $(seq 1 120); do
    grep -q "ready" "$home/worker$i.out" 2>/dev/null && break
    worker_running "$i" || { echo "worker $i exited; see $home/worker$i.log" >&2; tail -n 20 "$home/worker$i.log" >&2; exit 1; }
    sleep 0.5
  done
  grep -q "ready" "$home/worker$i.out" || { echo "worker $i is not ready after 60 s; see $home/worker$i.log" >&2; exit 1; }
  label="honest"
  [ "$i" -eq 3 ] && label="started with --cheat: it reveals wrong results"
  echo "worker $i $(compute keys show "$home/keys/worker$i.json") ($label)"
done
cheater="$(compute keys show "$home/keys/worker3.json")"

echo
echo "== the job: primes below $hi in $tasks tasks, 3 replicas each, quorum 2"
"$bin/primes-demo" wasm "$demo_dir/primes.wasm"
rm -rf "$demo_dir/inputs" "$demo_dir/outputs"
"$bin/primes-demo" inputs 0 "$hi" "$tasks" "$demo_dir/inputs"
started=$(date +%s%N)
compute job submit "$demo_dir/primes.wasm" --inputs "$demo_dir/inputs" \
  --key "$home/keys/demo.json" --replicas 3 --quorum 2 \
  --fuel 5000000000 --price 1 --out "$demo_dir/outputs"
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))

echo
echo "== the verified result beside a local check"
network="$("$bin/primes-demo" sum "$demo_dir/outputs")"
local_count="$("$bin/primes-demo" count 0 "$hi")"
echo "network: $network (job submitted to all outputs verified in $elapsed_ms ms)"
echo "local:   $local_count"
if [ "${network%% *}" = "${local_count%% *}" ]; then
  echo "the network's answer matches the local count"
else
  echo "error: the network's answer does not match the local count" >&2
  exit 1
fi

echo
echo "== the cheat was caught: the cheater's reputation and stake, via /abci_query"
answer="$(curl -s "$rpc/abci_query?path=%22/reputation/$cheater%22")"
value="$(echo "$answer" | sed -n 's/.*"value": *"\([^"]*\)".*/\1/p')"
echo "/reputation/$cheater"
echo "  $(echo "$value" | base64 -d)"
compute query "/worker/$cheater"

echo
echo "== the same record, verified: the header its app hash is in, and the proven state key"
compute verify query "/worker/$cheater"

echo
echo "== reputations after the job"
compute top

echo
echo "== one completion record (task 0)"
job="$(compute job list --master "$home/keys/demo.json" --status completed --limit 500 \
  | awk 'NR > 1 { id = $1 } END { print id }')"
compute --output json query "/completions?job=$job&limit=1"
echo
compute query /stats
if [ "$keep" -eq 1 ]; then
  echo
  echo "devnet, gateway and workers left running (stop them with: kill \$(cat $home/worker*.pid); scripts/devnet.sh stop)"
fi
