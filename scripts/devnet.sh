#!/usr/bin/env bash
# A local single-validator network on 127.0.0.1: cometbft + compute-abci,
# and a compute-node gateway in front of them.
#
#   scripts/devnet.sh [start]   create (first time) and start the devnet
#   scripts/devnet.sh stop      stop what start started
#   scripts/devnet.sh status    show whether it runs and its height
#   scripts/devnet.sh reset     stop and delete the devnet's home
#
# DEVNET_HOME (default .devnet in the clone) holds the CometBFT home, the
# app's state, the gateway's blobs, the demo keys and the logs
# (cometbft.log, compute-abci.log, compute-node.log).
# Ports: P2P 26656, RPC 26657, ABCI 26658, gateway gRPC 9090, gateway
# metrics 9464 (all on 127.0.0.1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh

home="${DEVNET_HOME:-$root/.devnet}"
rpc_port="${DEVNET_RPC_PORT:-26657}"
abci_port="${DEVNET_ABCI_PORT:-26658}"
p2p_port="${DEVNET_P2P_PORT:-26656}"
grpc_port="${DEVNET_GRPC_PORT:-9090}"
metrics_port="${DEVNET_METRICS_PORT:-9464}"
chain_id="${DEVNET_CHAIN_ID:-compute-devnet}"
block_time="${DEVNET_BLOCK_TIME:-300ms}"
compute="$COMPUTE_BIN_DIR/compute"

running() { [ -f "$home/$1.pid" ] && kill -0 "$(cat "$home/$1.pid")" 2>/dev/null; }

stop() {
  for name in compute-node cometbft compute-abci; do
    if running "$name"; then
      kill "$(cat "$home/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do running "$name" || break; sleep 0.1; done
      running "$name" && kill -9 "$(cat "$home/$name.pid")" 2>/dev/null || true
      echo "stopped $name"
    fi
    rm -f "$home/$name.pid"
  done
}

status() {
  if running cometbft && running compute-abci && running compute-node; then
    "$compute" --node "http://127.0.0.1:$rpc_port" status
  else
    echo "devnet is not running (start it with scripts/devnet.sh)"
    return 1
  fi
}

init_home() {
  mkdir -p "$home/keys"
  cometbft init --home "$home/cometbft" >/dev/null
  local genesis="$home/cometbft/config/genesis.json"
  sed -i "s/\"chain_id\": \"[^\"]*\"/\"chain_id\": \"$chain_id\"/" "$genesis"
  sed -i "s/^timeout_commit = .*/timeout_commit = \"$block_time\"/" "$home/cometbft/config/config.toml"
  # CometBFT must carry the largest transaction any genesis may allow
  # (TX_BYTES_CEILING, 4 MiB): its mempool limit and an RPC body holding the
  # transaction in base64 (docs/PARAMETERS.md, "Limits CometBFT must match").
  sed -i -e "s/^max_tx_bytes = .*/max_tx_bytes = 4194304/" \
    -e "s/^max_body_bytes = .*/max_body_bytes = 5593432/" "$home/cometbft/config/config.toml"
  for who in demo friend; do
    [ -f "$home/keys/$who.json" ] || "$compute" keys new "$home/keys/$who.json" >/dev/null
  done
  "$compute" genesis add-account "$genesis" "$home/keys/demo.json" 1000000000 >/dev/null
  # The validator's consensus key is an account too: it earns fees and rewards.
  "$compute" keys import "$home/cometbft/config/priv_validator_key.json" "$home/keys/validator.json" >/dev/null
  echo "created devnet home $home (chain $chain_id)"
}

start() {
  if running cometbft || running compute-abci || running compute-node; then
    echo "devnet already running"; status; return 0
  fi
  for port in "$rpc_port" "$abci_port" "$p2p_port" "$grpc_port" "$metrics_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "error: port $port on 127.0.0.1 is in use; stop what uses it or set DEVNET_RPC_PORT/DEVNET_ABCI_PORT/DEVNET_P2P_PORT/DEVNET_GRPC_PORT/DEVNET_METRICS_PORT" >&2
      exit 1
    fi
  done
  command -v cometbft >/dev/null || scripts/install-cometbft.sh
  echo "building compute-abci, compute-node, compute-sandbox and compute (the first build compiles RocksDB: about half an hour on two cores)"
  # `cargo build -q` waits silently for another cargo holding the lock of the
  # shared target directory: say so, or the wait looks like a hang.
  lock="$CARGO_TARGET_DIR/debug/.cargo-lock"
  if [ -e "$lock" ] && command -v flock >/dev/null && ! flock -n "$lock" true 2>/dev/null; then
    echo "waiting for another cargo process that holds $lock (the build starts when it finishes)"
  else
    echo "(the build waits first if another cargo process takes the lock of $CARGO_TARGET_DIR)"
  fi
  cargo build -q --workspace --bins
  [ -d "$home/cometbft" ] || init_home

  RUST_LOG="${RUST_LOG:-info}" nohup "$COMPUTE_BIN_DIR/compute-abci" --home "$home/abci" \
    --addr "tcp://127.0.0.1:$abci_port" >>"$home/compute-abci.log" 2>&1 &
  echo $! >"$home/compute-abci.pid"
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$abci_port") 2>/dev/null && break
    running compute-abci || { echo "compute-abci exited; see $home/compute-abci.log" >&2; tail -n 20 "$home/compute-abci.log" >&2; exit 1; }
    sleep 0.1
  done
  nohup cometbft node --home "$home/cometbft" --proxy_app "tcp://127.0.0.1:$abci_port" \
    --rpc.laddr "tcp://127.0.0.1:$rpc_port" --p2p.laddr "tcp://127.0.0.1:$p2p_port" \
    --p2p.pex=false >>"$home/cometbft.log" 2>&1 &
  echo $! >"$home/cometbft.pid"

  local height=0
  for _ in $(seq 1 120); do
    height="$("$compute" --node "http://127.0.0.1:$rpc_port" --output json status 2>/dev/null \
      | sed -n 's/.*"height":\([0-9]*\).*/\1/p' || true)"
    [ "${height:-0}" -ge 2 ] && break
    running cometbft || { echo "cometbft exited; see $home/cometbft.log" >&2; tail -n 20 "$home/cometbft.log" >&2; exit 1; }
    sleep 0.5
  done
  if [ "${height:-0}" -lt 2 ]; then
    echo "error: no blocks after 60 s; see $home/cometbft.log and $home/compute-abci.log" >&2
    exit 1
  fi
  RUST_LOG="${RUST_LOG:-info}" nohup "$COMPUTE_BIN_DIR/compute-node" \
    --listen "127.0.0.1:$grpc_port" --rpc "http://127.0.0.1:$rpc_port" \
    --home "$home/gateway" --metrics "127.0.0.1:$metrics_port" \
    >>"$home/compute-node.log" 2>&1 &
  echo $! >"$home/compute-node.pid"
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$grpc_port") 2>/dev/null && break
    running compute-node || { echo "compute-node exited; see $home/compute-node.log" >&2; tail -n 20 "$home/compute-node.log" >&2; exit 1; }
    sleep 0.1
  done
  local demo
  demo="$("$compute" keys show "$home/keys/demo.json")"
  cat <<MSG
devnet running: chain $chain_id at height $height
  RPC      http://127.0.0.1:$rpc_port     logs  $home/*.log
  gateway  http://127.0.0.1:$grpc_port (gRPC, reflection on)   metrics http://127.0.0.1:$metrics_port/metrics
  demo key  $home/keys/demo.json  (account $demo)

Try:
  curl -s 'http://127.0.0.1:$rpc_port/abci_query?path="/account/$demo"'
  curl -s 'http://127.0.0.1:$rpc_port/abci_query?path="/stats"'
  curl -s 'http://127.0.0.1:$rpc_port/abci_query?path="/params"'
  $compute transfer --key $home/keys/demo.json --to $home/keys/friend.json --amount 10
  $compute account $home/keys/friend.json
(query values are base64 JSON in the RPC answer; 'compute query /stats' decodes them)
Stop with: scripts/devnet.sh stop
MSG
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  reset)
    stop
    rm -rf "$home"
    echo "removed $home"
    # The next devnet is another chain under the same id: the headers the
    # CLI's light client trusted for this one would (rightly) refuse it.
    trusted="${HOME:-.}/.compute/light/$chain_id.json"
    if [ -f "$trusted" ]; then rm -f "$trusted"; echo "removed $trusted"; fi
    ;;
  *) echo "usage: $0 [start|stop|status|reset]" >&2; exit 2 ;;
esac
