#!/usr/bin/env bash
# The demo. On a fresh machine it installs what is missing and builds; then
# it starts a local single-validator network (cometbft + compute-abci + the
# compute-node gateway), three workers (one started with --cheat), and
# submits a real job: counting the primes below 320,000,000 in 32 tasks,
# each run by 3 workers with a quorum of 2. It shows the job's progress,
# prints the verified result beside a count made locally, and shows through
# /abci_query that the cheat was caught and how reputations changed.
# Then collusion: an honest worker leaves, a second --cheat worker joins,
# and the two cheaters (who falsify outputs the same way) outvote the honest
# one on every task of a smaller job; a watcher (compute-sandbox --watch)
# re-runs each settlement, disputes it, and the chain's referee overturns
# the results, slashes the pair and pays the watcher.
# Everything it started is stopped at the end, unless --keep is given.
#
#   scripts/demo.sh [--keep]
#
# Environment: DEMO_HI (default 320000000) and DEMO_TASKS (default 32) size
# the job; DEMO_COLLUSION=0 leaves out the collusion part; DEMO_CAPACITY (default 16 per core, at most 32) is the tasks each
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
# Funds key file $1 for its stake or bonds, when it holds little.
fund() {
  local id balance
  id="$(compute keys show "$1")"
  balance="$(compute --output json account "$id" | sed -n 's/.*"balance":\([0-9]*\).*/\1/p')"
  if [ "${balance:-0}" -lt 10000 ]; then
    compute transfer --key "$home/keys/demo.json" --to "$id" --amount 100000 >/dev/null
  fi
}
# Starts compute-sandbox number $1 with key file $2 and further flags.
start_worker() {
  local i="$1" key="$2"
  shift 2
  if ! worker_running "$i"; then
    RUST_LOG="${RUST_LOG:-info}" nohup "$bin/compute-sandbox" --key "$key" --gateway "$gateway" \
      --home "$home/worker$i" "$@" >"$home/worker$i.out" 2>>"$home/worker$i.log" &
    echo $! >"$home/worker$i.pid"
  fi
}
# Waits (at most 60 s) for compute-sandbox number $1's ready line.
wait_ready() {
  local i="$1"
  for _ in $(seq 1 120); do
    grep -q "ready" "$home/worker$i.out" 2>/dev/null && return 0
    worker_running "$i" || { echo "worker $i exited; see $home/worker$i.log" >&2; tail -n 20 "$home/worker$i.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "worker $i is not ready after 60 s; see $home/worker$i.log" >&2
  exit 1
}
stop_workers() {
  for i in 1 2 3 4 5; do
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
  fund "$key"
  cheat=()
  [ "$i" -eq 3 ] && cheat=(--cheat)
  start_worker "$i" "$key" --capacity "$capacity" --stake 10000 "${cheat[@]}"
done
for i in 1 2 3; do
  wait_ready "$i"
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

if [ "${DEMO_COLLUSION:-1}" != "0" ]; then
  echo
  echo "== collusion: worker 2 leaves; a second --cheat worker and a watcher join"
  # With one honest worker and two cheaters who falsify outputs the same
  # way, every task's quorum of 2 is the cheaters'.
  if worker_running 2; then kill "$(cat "$home/worker2.pid")"; fi
  for _ in $(seq 1 40); do worker_running 2 || break; sleep 0.25; done
  rm -f "$home/worker2.pid"
  compute worker unregister --key "$home/keys/worker2.json" >/dev/null
  echo "worker 2 $(compute keys show "$home/keys/worker2.json") unregistered"
  for who in worker4 watcher; do
    [ -f "$home/keys/$who.json" ] || compute keys new "$home/keys/$who.json" >/dev/null
    fund "$home/keys/$who.json"
  done
  start_worker 4 "$home/keys/worker4.json" --capacity "$capacity" --stake 10000 --cheat
  start_worker 5 "$home/keys/watcher.json" --watch --watch-sample 100
  wait_ready 4
  wait_ready 5
  colluder="$(compute keys show "$home/keys/worker4.json")"
  watcher="$(compute keys show "$home/keys/watcher.json")"
  echo "worker 4 $colluder (started with --cheat, like worker 3)"
  echo "watcher  $watcher (compute-sandbox --watch: re-runs every settlement)"

  echo
  echo "== a job the cheaters win: primes below 8,000,000 in 4 tasks (fuel within max_referee_fuel, so disputable)"
  rm -rf "$demo_dir/collusion"
  "$bin/primes-demo" inputs 0 8000000 4 "$demo_dir/collusion/inputs"
  summary="$(compute --output json job submit "$demo_dir/primes.wasm" \
    --inputs "$demo_dir/collusion/inputs" --key "$home/keys/demo.json" --replicas 3 --quorum 2 \
    --fuel 400000000 --price 1 --out "$demo_dir/collusion/settled")"
  cjob="$(echo "$summary" | sed -n 's/.*"job":"\([0-9a-f]\{64\}\)".*/\1/p' | head -n 1)"
  echo "job $cjob completed: every task settled, by the pair's quorum"
  echo "settled by the pair: $("$bin/primes-demo" sum "$demo_dir/collusion/settled")"
  echo "local count:         $("$bin/primes-demo" count 0 8000000)"

  echo
  echo "== the watcher disputes; every validator re-runs the tasks (the referee)"
  overturned=0
  for _ in $(seq 1 120); do
    overturned="$(compute --output json query /stats | sed -n 's/.*"results_overturned":\([0-9]*\).*/\1/p')"
    [ "${overturned:-0}" -ge 4 ] && break
    sleep 0.5
  done
  echo "results overturned: ${overturned:-0} of 4"
  [ "${overturned:-0}" -ge 4 ] || { echo "error: the watcher's disputes did not overturn every result; see $home/worker5.log" >&2; exit 1; }
  compute job results "$cjob" --out "$demo_dir/collusion/corrected"
  corrected="$("$bin/primes-demo" sum "$demo_dir/collusion/corrected")"
  echo "corrected by the referee: $corrected"
  if [ "${corrected%% *}" = "$("$bin/primes-demo" count 0 8000000 | awk '{print $1}')" ]; then
    echo "the corrected answer matches the local count"
  else
    echo "error: the corrected answer does not match the local count" >&2
    exit 1
  fi
  echo
  echo "== the watcher's reputation (cheaters_reported) and the pair's stakes"
  compute query "/reputation/$watcher"
  compute query "/worker/$cheater"
  compute query "/worker/$colluder"
fi
if [ "$keep" -eq 1 ]; then
  echo
  echo "devnet, gateway and workers left running (stop them with: kill \$(cat $home/worker*.pid); scripts/devnet.sh stop)"
fi
