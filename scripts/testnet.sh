#!/usr/bin/env bash
# A local network of N validators on 127.0.0.1: per node, cometbft +
# compute-abci under compute-supervisor, and a compute-node gateway; one
# genesis, peers by address.
#
#   scripts/testnet.sh start [N]    create (first time; N from 1 to 16,
#                                   default 4) and start every node
#   scripts/testnet.sh stop         stop every node
#   scripts/testnet.sh status       processes, supervisor restarts, height,
#                                   peers and app hash at a common height,
#                                   per node
#   scripts/testnet.sh kill I       SIGKILL node I (a crash of the node)
#   scripts/testnet.sh crash I [cometbft|abci]
#                                   SIGKILL one child of node I's supervisor
#                                   and watch it recover
#   scripts/testnet.sh restart I    start node I again (stopping it first
#                                   if it runs)
#   scripts/testnet.sh reset        stop and delete the testnet's home
#   scripts/testnet.sh --hosts H1,H2,... --out DIR
#                                   write the homes of a network across
#                                   machines into DIR (starts nothing)
#
# Run `scripts/testnet.sh --help` for the options. Nodes are numbered from
# 1; node I's ports are BASE + 10*(I-1) + 0 (P2P), 1 (RPC), 2 (ABCI),
# 3 (gateway gRPC), 4 (gateway metrics), BASE 27656 unless set.
set -euo pipefail
cwd="$PWD"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh

usage() {
  cat <<'USAGE'
usage: scripts/testnet.sh [OPTIONS] COMMAND

A network of N validators on 127.0.0.1. Each node I has its own cometbft
and compute-abci, run as one unit by a compute-supervisor, and a
compute-node gateway, with its own homes, logs and ports; all share one
genesis whose app_state funds a demo key and every validator's key.

Commands:
  start [N]     create the testnet (first time; N from 1 to 16, default 4)
                and start whatever of it is not running; waits until every
                node reports a height of at least 2, then prints the nodes
  stop          stop every node: SIGTERM to each gateway and supervisor
                (which stops cometbft, then compute-abci), SIGKILL to what
                is left after 20 s
  status        per node: processes, the restarts its supervisor logged
                since it started, height, peers, and the app hash of the
                highest block all running nodes have (they must agree)
  kill I        SIGKILL node I's compute-node, compute-supervisor, cometbft
                and compute-abci (a crash of the node; it stays down)
  crash I [cometbft|abci]
                SIGKILL only node I's cometbft or compute-abci (default
                abci): its supervisor stops the other, repairs the event
                index and restarts both; shows the supervisor's log while
                it waits a bounded time for the node to be in step again
  restart I     start node I again: its supervisor (compute-abci, then
                cometbft), then the gateway (a running node is stopped
                first); waits a bounded time for it to catch up
  reset         stop, and delete the testnet's home

  --hosts H1,H2,...  --out DIR
                write, without starting anything, the homes of a network of
                one validator per host (standard ports: P2P 26656, RPC 26657,
                ABCI 26658, gateway 9090, metrics 9464) into DIR, with
                DIR/README.txt saying how to start each machine

Options (and the environment variables they override):
  --home DIR          the testnet's home (TESTNET_HOME, default .testnet in
                      the clone): node1/ .. nodeN/, keys/, genesis.json;
                      nodeI/ holds the homes (cometbft/, abci/, gateway/),
                      the logs (compute-supervisor.log, cometbft.log,
                      compute-abci.log, compute-node.log) and run/, the
                      supervisor's run dir
  --base-port P       node I uses ports P+10*(I-1) .. +4: P2P, RPC, ABCI,
                      gateway gRPC, gateway metrics (TESTNET_BASE_PORT,
                      default 27656; fixed when the home is created)
  --chain-id ID       (TESTNET_CHAIN_ID, default compute-testnet)
  --block-time T      CometBFT's timeout_commit (TESTNET_BLOCK_TIME, default
                      300ms on loopback, 1s with --hosts)
  --wait-secs S       how long start and restart wait for blocks
                      (TESTNET_WAIT_SECS, default 90)
  -h, --help          this text

The binaries come from `cargo build --workspace --bins` ($COMPUTE_BIN_DIR)
and cometbft v0.38 from scripts/install-cometbft.sh; this script builds and
downloads nothing.
USAGE
}

die() { echo "error: $*" >&2; exit 1; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "${#1}" -le 9 ]; }
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$cwd/$1" ;; esac; }

# CometBFT must carry the largest transaction any genesis may allow
# (TX_BYTES_CEILING, 4 MiB): its mempool limit, and an RPC body holding the
# transaction in base64 (docs/PARAMETERS.md, "Limits CometBFT must match").
mempool_max_tx_bytes=4194304
rpc_max_body_bytes=5593432
demo_balance=1000000000
validator_balance=1000000
max_nodes=16
max_hosts=100

default_home="$root/.testnet"
home="$(abspath "${TESTNET_HOME:-$default_home}")"
opt_base_port="${TESTNET_BASE_PORT:-}"
opt_chain_id="${TESTNET_CHAIN_ID:-}"
opt_block_time="${TESTNET_BLOCK_TIME:-}"
wait_secs="${TESTNET_WAIT_SECS:-90}"
hosts=""
out=""
args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --home | --base-port | --chain-id | --block-time | --wait-secs | --hosts | --out)
      [ "$#" -ge 2 ] || die "$1 needs a value (see --help)"
      case "$1" in
        --home) home="$(abspath "$2")" ;;
        --base-port) opt_base_port="$2" ;;
        --chain-id) opt_chain_id="$2" ;;
        --block-time) opt_block_time="$2" ;;
        --wait-secs) wait_secs="$2" ;;
        --hosts) hosts="$2" ;;
        --out) out="$(abspath "$2")" ;;
      esac
      shift 2 ;;
    --home=* | --base-port=* | --chain-id=* | --block-time=* | --wait-secs=* | --hosts=* | --out=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --) shift; args+=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- ${args[@]+"${args[@]}"}

if ! { is_uint "$wait_secs" && [ "$wait_secs" -ge 1 ] && [ "$wait_secs" -le 3600 ]; }; then
  die "--wait-secs must be a number of seconds from 1 to 3600"
fi
if [ -n "$opt_base_port" ]; then
  if ! { is_uint "$opt_base_port" && [ "$opt_base_port" -ge 1024 ] \
    && [ "$opt_base_port" -le $((65535 - 10 * (max_nodes - 1) - 4)) ]; }; then
    die "--base-port must be from 1024 to $((65535 - 10 * (max_nodes - 1) - 4))"
  fi
fi
if [ -n "$opt_chain_id" ]; then
  [[ "$opt_chain_id" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$ ]] \
    || die "--chain-id must be 1 to 50 letters, digits, '.', '_' or '-'"
fi
if [ -n "$opt_block_time" ]; then
  [[ "$opt_block_time" =~ ^[0-9]+(ms|s)$ ]] || die "--block-time must look like 300ms or 1s"
fi

compute="$COMPUTE_BIN_DIR/compute"
# How to call this script again for the same home, in the hints it prints.
self="scripts/testnet.sh"
[ "$home" = "$default_home" ] || self="$self --home $home"
plural() { if [ "$1" -eq 1 ]; then echo "$1 $2"; else echo "$1 $2s"; fi; }

need_binaries() {
  local missing=() b
  for b in "$@"; do [ -x "$COMPUTE_BIN_DIR/$b" ] || missing+=("$b"); done
  [ "${#missing[@]}" -eq 0 ] || die "missing ${missing[*]} in $COMPUTE_BIN_DIR: build them with \`cargo build --workspace --bins\` (in $root)"
}

need_cometbft() {
  command -v cometbft >/dev/null || die "cometbft is not on PATH: install it with scripts/install-cometbft.sh (into .tools/bin)"
  local version
  version="$(cometbft version 2>/dev/null || true)"
  case "$version" in
    0.38.*) ;;
    *) echo "warning: cometbft $version is not v0.38 (scripts/install-cometbft.sh installs v0.38.25); its config may differ" >&2 ;;
  esac
}

need_curl() {
  command -v curl >/dev/null || die "curl is needed to ask the nodes' RPC (scripts/setup.sh installs it)"
}

# --- the home ----------------------------------------------------------------

conf="$home/testnet.conf"
nodes=""
base_port=""
chain_id=""
block_time=""

load_conf() {
  [ -f "$conf" ] || return 1
  local key value
  while IFS='=' read -r key value; do
    case "$key" in
      nodes) nodes="$value" ;;
      base_port) base_port="$value" ;;
      chain_id) chain_id="$value" ;;
      block_time) block_time="$value" ;;
    esac
  done <"$conf"
  if ! { is_uint "$nodes" && is_uint "$base_port" && [ -n "$chain_id" ]; }; then
    die "$conf is damaged; '$self reset' deletes the testnet"
  fi
  if [ -n "$opt_base_port" ] && [ "$opt_base_port" != "$base_port" ]; then
    die "the testnet in $home uses base port $base_port; 'reset' it to change ports"
  fi
  if [ -n "$opt_chain_id" ] && [ "$opt_chain_id" != "$chain_id" ]; then
    die "the testnet in $home is chain $chain_id; 'reset' it to change the chain id"
  fi
  return 0
}

require_home() {
  load_conf || die "no testnet in $home (create one with: $self start [N])"
}

node_dir() { printf '%s/node%s\n' "$home" "$1"; }
p2p_port() { echo $((base_port + 10 * ($1 - 1))); }
rpc_port() { echo $((base_port + 10 * ($1 - 1) + 1)); }
abci_port() { echo $((base_port + 10 * ($1 - 1) + 2)); }
grpc_port() { echo $((base_port + 10 * ($1 - 1) + 3)); }
metrics_port() { echo $((base_port + 10 * ($1 - 1) + 4)); }

check_index() {
  if ! { is_uint "${1:-}" && [ "$1" -ge 1 ] && [ "$1" -le "$nodes" ]; }; then
    die "no node '${1:-}': this testnet has nodes 1 to $nodes"
  fi
}

# Sets KEY = VALUE (VALUE as TOML, quotes included) in [SECTION] of a
# CometBFT config.toml ("" is the part before the first section).
toml_set() {
  local file="$1" section="$2" key="$3" value="$4"
  awk -v s="$section" -v k="$key" -v v="$value" '
    /^\[[^]]*\][ \t]*$/ { cur = $0; sub(/^\[/, "", cur); sub(/\][ \t]*$/, "", cur) }
    !done && cur == s && index($0, k " = ") == 1 { print k " = " v; done = 1; next }
    { print }
    END { if (!done) exit 3 }' "$file" >"$file.tmp" \
    || { rm -f "$file.tmp"; die "could not set [$section] $key in $file (is cometbft v0.38?)"; }
  mv "$file.tmp" "$file"
}

# Creates the CometBFT homes of N validators with `cometbft testnet` under
# GEN, one genesis with our app_state, and the demo keys in KEYS. Prints
# nothing; the caller configures each node's config.toml.
generate() {
  local n="$1" gen="$2" keys="$3" dest_of="$4" i
  cometbft testnet --v "$n" --o "$gen" --populate-persistent-peers=false >/dev/null
  mkdir -p "$keys"
  for who in demo friend; do
    [ -f "$keys/$who.json" ] || "$compute" keys new "$keys/$who.json" >/dev/null
  done
  for i in $(seq 1 "$n"); do
    local dir
    dir="$("$dest_of" "$i")"
    mkdir -p "$dir"
    mv "$gen/node$((i - 1))" "$dir/cometbft"
  done
  rmdir "$gen"
  local genesis
  genesis="$("$dest_of" 1)/cometbft/config/genesis.json"
  sed -i "s/\"chain_id\": \"[^\"]*\"/\"chain_id\": \"$chain_id\"/" "$genesis"
  "$compute" genesis add-account "$genesis" "$keys/demo.json" "$demo_balance" >/dev/null
  for i in $(seq 1 "$n"); do
    local dir
    dir="$("$dest_of" "$i")"
    # The validator's consensus key is an account too: it earns the block
    # rewards and fees of the blocks it proposes.
    "$compute" keys import "$dir/cometbft/config/priv_validator_key.json" "$dir/validator.json" >/dev/null
    "$compute" genesis add-account "$genesis" "$dir/validator.json" "$validator_balance" >/dev/null
  done
  # `cometbft testnet` names the validators node0..; ours count from 1.
  for i in $(seq "$n" -1 1); do
    sed -i "s/\"name\": \"node$((i - 1))\"/\"name\": \"node$i\"/" "$genesis"
  done
  # It gives each validator power 1; `cometbft init` (the devnet) gives 10,
  # what the chain's default stake_per_power makes of the minimum stake
  # (docs/PARAMETERS.md), so a validator bonding later does not outweigh
  # the genesis ones.
  sed -i 's/"power": "1"/"power": "10"/' "$genesis"
  for i in $(seq 2 "$n"); do
    cp "$genesis" "$("$dest_of" "$i")/cometbft/config/genesis.json"
  done
}

# The settings every node gets, loopback or not.
configure_common() {
  local config="$1/cometbft/config/config.toml" i="$2"
  toml_set "$config" "" moniker "\"node$i\""
  toml_set "$config" rpc max_body_bytes "$rpc_max_body_bytes"
  toml_set "$config" mempool max_tx_bytes "$mempool_max_tx_bytes"
  toml_set "$config" consensus timeout_commit "\"$block_time\""
  toml_set "$config" p2p addr_book_strict false
}

create_home() {
  local n="$1" i j
  [ -e "$home" ] && [ -n "$(ls -A "$home" 2>/dev/null)" ] \
    && die "$home exists but holds no testnet.conf; move it away or set TESTNET_HOME"
  base_port="${opt_base_port:-27656}"
  chain_id="${opt_chain_id:-compute-testnet}"
  block_time="${opt_block_time:-300ms}"
  nodes="$n"
  mkdir -p "$home"
  # A creation that fails leaves nothing behind (the home was empty).
  trap 'rm -rf -- "$home"' EXIT
  generate "$n" "$home/.generating" "$home/keys" node_dir
  cp "$(node_dir 1)/cometbft/config/genesis.json" "$home/genesis.json"
  local ids=()
  for i in $(seq 1 "$n"); do
    ids[i]="$(cometbft show-node-id --home "$(node_dir "$i")/cometbft")"
  done
  for i in $(seq 1 "$n"); do
    local dir config peer_list=""
    dir="$(node_dir "$i")"
    config="$dir/cometbft/config/config.toml"
    for j in $(seq 1 "$n"); do
      [ "$j" -eq "$i" ] && continue
      peer_list="${peer_list:+$peer_list,}${ids[j]}@127.0.0.1:$(p2p_port "$j")"
    done
    configure_common "$dir" "$i"
    toml_set "$config" "" proxy_app "\"tcp://127.0.0.1:$(abci_port "$i")\""
    toml_set "$config" rpc laddr "\"tcp://127.0.0.1:$(rpc_port "$i")\""
    toml_set "$config" p2p laddr "\"tcp://127.0.0.1:$(p2p_port "$i")\""
    toml_set "$config" p2p persistent_peers "\"$peer_list\""
    toml_set "$config" p2p allow_duplicate_ip true
    # Every node dials every other: no peer exchange needed.
    toml_set "$config" p2p pex false
    # Faster rounds when a proposer is down (as the integration tests do).
    toml_set "$config" consensus timeout_propose '"1s"'
    mkdir -p "$dir/abci" "$dir/gateway"
  done
  printf 'nodes=%s\nbase_port=%s\nchain_id=%s\nblock_time=%s\n' \
    "$nodes" "$base_port" "$chain_id" "$block_time" >"$conf.tmp"
  mv "$conf.tmp" "$conf"
  trap - EXIT
  echo "created testnet home $home: chain $chain_id, $(plural "$n" validator)"
}

# --- processes ---------------------------------------------------------------

# Node I runs two processes of ours: compute-supervisor, which runs cometbft
# and compute-abci as one unit (docs/OPERATIONS.md, "Supervising a
# validator"), and the gateway compute-node. The script's pid files for
# those two sit in the node's dir; the supervisor writes its children's in
# its run dir, nodeI/run/ (it also writes run/supervisor.pid, but only once
# it runs, so the script keeps its own from the moment it starts it).

# The supervisor's grace between SIGTERM and SIGKILL for each child, and how
# long `stop` waits for it: cometbft, then compute-abci, each up to the grace
# and then SIGKILL, plus time to reap (the help says 20 s).
kill_grace_secs=5
stop_secs=$((2 * kill_grace_secs + 10))

run_dir() { printf '%s/run\n' "$(node_dir "$1")"; }

# NAME is a program, or legacy-cometbft and legacy-compute-abci for the pid
# files this script kept in the node's dir before the supervisor ran them
# (`stop` still stops a testnet started then).
pidfile() {
  case "$2" in
    cometbft | compute-abci) printf '%s/%s.pid\n' "$(run_dir "$1")" "$2" ;;
    *) printf '%s/%s.pid\n' "$(node_dir "$1")" "${2#legacy-}" ;;
  esac
}

# Whether node I's NAME runs: its pid file names a live process whose
# program is NAME and one of whose arguments lies in node I's dir (a stale
# pid reused by another program, or by another testnet's, does not count).
running() {
  local file pid dir arg argv=()
  file="$(pidfile "$1" "$2")"
  [ -f "$file" ] || return 1
  pid="$(cat "$file" 2>/dev/null || true)"
  is_uint "$pid" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [ -r "/proc/$pid/cmdline" ] || return 0
  mapfile -d '' -t argv <"/proc/$pid/cmdline" 2>/dev/null || return 1
  if ! { [ "${#argv[@]}" -ge 1 ] && [ "${argv[0]##*/}" = "${2#legacy-}" ]; }; then return 1; fi
  dir="$(node_dir "$1")/"
  for arg in "${argv[@]:1}"; do
    case "$arg" in "$dir"* | *"=$dir"*) return 0 ;; esac
  done
  return 1
}

pid_of() { cat "$(pidfile "$1" "$2")"; }

# Removes a pid file of the script's own; the supervisor's run dir is left
# to the supervisor (which checks a stale pid file before it trusts it).
forget() {
  case "$2" in cometbft | compute-abci) ;; *) rm -f "$(pidfile "$1" "$2")" ;; esac
}

# An outgoing connection (a P2P dial, an RPC poll) takes its local port from
# the kernel's ephemeral range; a node port inside that range may be held by
# one just when the node restarts and wants to listen on it ("Address
# already in use", which the supervisor then retries with its backoff).
warn_ephemeral() {
  local low high last=$((base_port + 10 * (nodes - 1) + 4))
  read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || return 0
  if ! { is_uint "${low:-x}" && is_uint "${high:-x}"; }; then return 0; fi
  if [ "$base_port" -le "$high" ] && [ "$last" -ge "$low" ]; then
    echo "warning: ports $base_port..$last lie in the kernel's ephemeral port range $low..$high" \
      "(/proc/sys/net/ipv4/ip_local_port_range): an outgoing connection may hold one when a node" \
      "restarts; a base port below $((low - 10 * (nodes - 1) - 4)) avoids that" >&2
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_free() {
  local port
  for port in "$@"; do
    port_open "$port" && die "port $port on 127.0.0.1 is in use (by another testnet, a devnet?); stop what uses it, or give a new testnet other ports with --base-port"
  done
  return 0
}

log_tail() {
  echo "$2 of node $1 exited; the end of $(node_dir "$1")/$2.log:" >&2
  tail -n 20 "$(node_dir "$1")/$2.log" >&2 || true
  echo "(what else started keeps running: '$self stop' stops it)" >&2
  exit 1
}

# Waits (bounded: 2 s) until the process just started in the background as
# node I's NAME has become NAME: until it has exec'd, its pid ($!) is that of
# a copy of this shell, then of nohup.
wait_exec() {
  local i="$1" name="$2" _
  for _ in $(seq 1 100); do
    running "$i" "$name" && return 0
    kill -0 "$(pid_of "$i" "$name")" 2>/dev/null || break
    sleep 0.02
  done
  log_tail "$i" "$name"
}

# Waits (bounded: SECS, default 20) until node I's PORT accepts
# connections, while node I's NAME runs.
wait_port() {
  local i="$1" name="$2" port="$3" secs="${4:-20}" _
  for _ in $(seq 1 $((secs * 10))); do
    port_open "$port" && return 0
    running "$i" "$name" || log_tail "$i" "$name"
    sleep 0.1
  done
  die "node $i does not listen on 127.0.0.1:$port after $secs s; see $(node_dir "$i")/*.log"
}

# Starts node I's supervisor, which starts compute-abci, waits for its ABCI
# port, then starts cometbft, and restarts both when either dies. The
# addresses are in config.toml too; giving them here keeps the node's
# command line saying what it listens on.
start_supervisor() {
  local i="$1" dir j peers=()
  dir="$(node_dir "$i")"
  running "$i" compute-supervisor && return 0
  need_free "$(p2p_port "$i")" "$(rpc_port "$i")" "$(abci_port "$i")"
  for j in $(seq 1 "$nodes"); do
    [ "$j" -eq "$i" ] || peers+=(--peer-rpc "http://127.0.0.1:$(rpc_port "$j")")
  done
  RUST_LOG="${RUST_LOG:-info}" nohup "$COMPUTE_BIN_DIR/compute-supervisor" \
    --cometbft-bin "$(command -v cometbft)" --cometbft-home "$dir/cometbft" \
    --cometbft-arg="--proxy_app=tcp://127.0.0.1:$(abci_port "$i")" \
    --cometbft-arg="--rpc.laddr=tcp://127.0.0.1:$(rpc_port "$i")" \
    --cometbft-arg="--p2p.laddr=tcp://127.0.0.1:$(p2p_port "$i")" \
    --abci-bin "$COMPUTE_BIN_DIR/compute-abci" \
    --abci-arg=--home --abci-arg="$dir/abci" \
    --abci-arg=--addr --abci-arg="tcp://127.0.0.1:$(abci_port "$i")" \
    --abci-addr "tcp://127.0.0.1:$(abci_port "$i")" \
    --rpc "http://127.0.0.1:$(rpc_port "$i")" ${peers[@]+"${peers[@]}"} \
    --kill-grace "${kill_grace_secs}s" \
    --run-dir "$(run_dir "$i")" --log-dir "$dir" \
    >>"$dir/compute-supervisor.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$i" compute-supervisor)"
  wait_exec "$i" compute-supervisor
}

start_gateway() {
  local i="$1" dir j peers=()
  dir="$(node_dir "$i")"
  running "$i" compute-node && return 0
  need_free "$(grpc_port "$i")" "$(metrics_port "$i")"
  for j in $(seq 1 "$nodes"); do
    [ "$j" -eq "$i" ] || peers+=(--peer "http://127.0.0.1:$(grpc_port "$j")")
  done
  RUST_LOG="${RUST_LOG:-info}" nohup "$COMPUTE_BIN_DIR/compute-node" \
    --listen "127.0.0.1:$(grpc_port "$i")" --rpc "http://127.0.0.1:$(rpc_port "$i")" \
    --home "$dir/gateway" --metrics "127.0.0.1:$(metrics_port "$i")" \
    ${peers[@]+"${peers[@]}"} >>"$dir/compute-node.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$i" compute-node)"
  wait_exec "$i" compute-node
}

# SIGKILLs node I's supervisor and its children at once, as a crash of the
# machine would, and prints what it killed. The supervisor is stopped
# (SIGSTOP) first, so that it cannot start a child between the reading of
# the pid files and the kill; its children are also found by parent pid, in
# case one has no pid file yet (or is a `cometbft reindex-event`).
kill_unit() {
  local i="$1" sup="" pid name pids=() names=()
  if running "$i" compute-supervisor; then
    sup="$(pid_of "$i" compute-supervisor)"
    kill -STOP "$sup" 2>/dev/null || true
    pids+=("$sup")
    names+=("compute-supervisor ($sup)")
  fi
  for name in cometbft compute-abci; do
    if running "$i" "$name"; then
      pid="$(pid_of "$i" "$name")"
      pids+=("$pid")
      names+=("$name ($pid)")
    fi
  done
  if [ -n "$sup" ] && command -v pgrep >/dev/null; then
    for pid in $(pgrep -P "$sup" || true); do
      case " ${pids[*]} " in *" $pid "*) continue ;; esac
      pids+=("$pid")
      names+=("$(cat "/proc/$pid/comm" 2>/dev/null || echo child) ($pid)")
    done
  fi
  [ "${#pids[@]}" -gt 0 ] || return 0
  kill -9 "${pids[@]}" 2>/dev/null || true
  forget "$i" compute-supervisor
  printf '%s\n' "${names[@]}"
}

# Stops the given "I:NAME" processes together: SIGTERM, up to stop_secs,
# then SIGKILL. A supervisor that needs the SIGKILL leaves its children
# running: they get it too.
terminate() {
  local item i name live=() pids=() any deadline
  for item in "$@"; do
    i="${item%%:*}" name="${item#*:}"
    if running "$i" "$name"; then
      live+=("$item")
      pids+=("$(pid_of "$i" "$name")")
    else
      forget "$i" "$name"
    fi
  done
  [ "${#live[@]}" -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  deadline=$((SECONDS + stop_secs))
  while [ "$SECONDS" -lt "$deadline" ]; do
    any=0
    for item in "${live[@]}"; do running "${item%%:*}" "${item#*:}" && any=1; done
    [ "$any" -eq 0 ] && break
    sleep 0.1
  done
  for item in "${live[@]}"; do
    i="${item%%:*}" name="${item#*:}"
    if running "$i" "$name"; then
      if [ "$name" = compute-supervisor ]; then
        echo "node $i: $name ignored SIGTERM for $stop_secs s; sent SIGKILL to $(kill_unit "$i" | paste -sd ' ')"
      else
        echo "node $i: ${name#legacy-} ignored SIGTERM for $stop_secs s; sending SIGKILL"
        kill -9 "$(pid_of "$i" "$name")" 2>/dev/null || true
      fi
    fi
    forget "$i" "$name"
    echo "node $i: stopped ${name#legacy-}"
  done
}

# Stops nodes I...: each gateway and supervisor (which stops cometbft, then
# compute-abci), and a cometbft or compute-abci whose supervisor is gone.
stop_nodes() {
  local i items=()
  for i in "$@"; do
    items+=("$i:compute-node" "$i:compute-supervisor" "$i:legacy-cometbft" "$i:legacy-compute-abci")
    running "$i" compute-supervisor || items+=("$i:cometbft" "$i:compute-abci")
  done
  terminate "${items[@]}"
  # What a supervisor stopped cleanly is gone; anything else is a leftover.
  for i in "$@"; do
    if running "$i" cometbft || running "$i" compute-abci; then
      echo "node $i: killed what its supervisor left: $(kill_unit "$i" | paste -sd ' ')"
    fi
  done
}

# --- asking the nodes --------------------------------------------------------

rpc_get() { curl -sf -m 2 "http://127.0.0.1:$(rpc_port "$1")/$2" 2>/dev/null; }

# The first value of "NAME" in the JSON on stdin (CometBFT quotes numbers).
json_field() {
  { grep -o "\"$1\": *\"\{0,1\}[^\",}]*" || true; } | head -n 1 | sed 's/^[^:]*: *"\{0,1\}//'
}

# Node I's latest height, or nothing when it does not answer.
height_of() {
  local h
  h="$(rpc_get "$1" status | json_field latest_block_height || true)"
  if is_uint "${h:-x}"; then echo "$h"; fi
}

# The highest height of the nodes other than I that answer, and how many
# answer: "HEIGHT COUNT".
others_height() {
  local i="$1" j h high=0 count=0
  for j in $(seq 1 "$nodes"); do
    [ "$j" -eq "$i" ] && continue
    running "$j" cometbft || continue
    h="$(height_of "$j")"
    [ -n "$h" ] || continue
    count=$((count + 1))
    if [ "$h" -gt "$high" ]; then high="$h"; fi
  done
  echo "$high $count"
}

# The supervisor's log lines (supervisor/src/unit.rs) that mark its start
# and each restart of the unit.
started_line="supervisor started"
restart_line="restarting compute-abci and cometbft in"

# How many restarts node I's supervisor logged since it last started, and
# the reason of the last one: "COUNT REASON".
restarts_of() {
  local log
  log="$(node_dir "$1")/compute-supervisor.log"
  [ -f "$log" ] || { echo 0; return 0; }
  awk -v s="$started_line" -v r="$restart_line" '
    index($0, s) { n = 0; why = "" }
    index($0, r) { n++; why = $0; sub(/.* reason=/, "", why) }
    END { print n + 0, why }' "$log"
}

print_nodes() {
  local i
  printf '%-5s %-24s %-24s %-32s %s\n' node RPC "gateway (gRPC)" metrics "home and logs"
  for i in $(seq 1 "$nodes"); do
    printf '%-5s %-24s %-24s %-32s %s\n' "$i" "http://127.0.0.1:$(rpc_port "$i")" \
      "http://127.0.0.1:$(grpc_port "$i")" "http://127.0.0.1:$(metrics_port "$i")/metrics" \
      "$(node_dir "$i")/*.log"
  done
}

# --- commands ----------------------------------------------------------------

cmd_start() {
  local n="${1:-}" i
  need_binaries compute compute-abci compute-node compute-supervisor
  need_cometbft
  need_curl
  if [ -n "$n" ]; then
    if ! { is_uint "$n" && [ "$n" -ge 1 ] && [ "$n" -le "$max_nodes" ]; }; then
      die "N must be from 1 to $max_nodes"
    fi
  fi
  if load_conf; then
    if [ -n "$n" ] && [ "$n" != "$nodes" ]; then
      die "the testnet in $home has $(plural "$nodes" node); '$self reset' first to make one of $n"
    fi
  else
    # Check the ports before writing a home that fixes them.
    nodes="${n:-4}"
    base_port="${opt_base_port:-27656}"
    for i in $(seq 1 "$nodes"); do
      need_free "$(p2p_port "$i")" "$(rpc_port "$i")" "$(abci_port "$i")" "$(grpc_port "$i")" "$(metrics_port "$i")"
    done
    create_home "$nodes"
  fi
  warn_ephemeral

  local todo=()
  for i in $(seq 1 "$nodes"); do
    if ! running "$i" compute-supervisor || ! running "$i" compute-node; then
      todo+=("$i")
    fi
  done
  if [ "${#todo[@]}" -eq 0 ]; then
    echo "testnet already running ($(plural "$nodes" node) in $home)"
    cmd_status
    return 0
  fi
  # A cometbft or compute-abci whose supervisor is gone holds the ports the
  # new supervisor needs.
  for i in "${todo[@]}"; do
    running "$i" compute-supervisor || stop_nodes "$i"
  done
  # Check every port first, so a clash stops the start before anything runs.
  for i in "${todo[@]}"; do
    running "$i" compute-supervisor || need_free "$(p2p_port "$i")" "$(rpc_port "$i")" "$(abci_port "$i")"
    running "$i" compute-node || need_free "$(grpc_port "$i")" "$(metrics_port "$i")"
  done
  echo "starting node(s) ${todo[*]} of $nodes in $home"
  for i in "${todo[@]}"; do start_supervisor "$i"; done

  # Wait until every node has a block made after this start: height 2 for a
  # new network, one above the highest stored height for one that ran before
  # (a restarted node reports its stored height at once, before it has
  # peers).
  local heights=() h low high target="" all _
  for _ in $(seq 1 $((wait_secs * 2))); do
    heights=()
    low=""
    high=0
    all=1
    for i in $(seq 1 "$nodes"); do
      running "$i" compute-supervisor || log_tail "$i" compute-supervisor
      h="$(height_of "$i")"
      if [ -z "$h" ]; then all=0; h=0; fi
      heights+=("$h")
      if [ -z "$low" ] || [ "$h" -lt "$low" ]; then low="$h"; fi
      if [ "$h" -gt "$high" ]; then high="$h"; fi
    done
    if [ -z "$target" ] && [ "$all" -eq 1 ]; then
      target=$((high + 1))
      [ "$target" -ge 2 ] || target=2
    fi
    if [ -n "$target" ] && [ "$low" -ge "$target" ]; then break; fi
    sleep 0.5
  done
  if [ -z "$target" ] || [ "$low" -lt "$target" ]; then
    die "not every node reached height ${target:-2} after $wait_secs s (heights: ${heights[*]}); see $home/node*/compute-supervisor.log, cometbft.log and compute-abci.log"
  fi
  for i in "${todo[@]}"; do start_gateway "$i"; done
  for i in "${todo[@]}"; do wait_port "$i" compute-node "$(grpc_port "$i")"; done

  local demo
  demo="$("$compute" keys show "$home/keys/demo.json")"
  local second=1
  [ "$nodes" -ge 2 ] && second=2
  echo
  echo "testnet running: chain $chain_id, $(plural "$nodes" validator), heights ${heights[*]}"
  print_nodes
  cat <<MSG

demo key  $home/keys/demo.json  (account $demo, $demo_balance credits)
validator I's account key  $home/nodeI/validator.json (its consensus key)

Try:
  $self status
  $compute --node http://127.0.0.1:$(rpc_port "$second") transfer --key $home/keys/demo.json --to $home/keys/friend.json --amount 10
  $compute --node http://127.0.0.1:$(rpc_port 1) account $home/keys/friend.json
  $self crash $second abci     # its supervisor restarts it
  $self kill $second; $self restart $second
Stop with: $self stop
MSG
}

cmd_stop() {
  if ! load_conf; then
    echo "no testnet in $home"
    return 0
  fi
  # shellcheck disable=SC2046 # the node numbers split on purpose
  stop_nodes $(seq 1 "$nodes")
}

cmd_status() {
  require_home
  need_curl
  local i name up=() heights=() peer_counts=() catch_flags=() restarts=() notes=() procs low="" any=0 voting=0
  local quorum=$((2 * nodes / 3 + 1))
  for i in $(seq 1 "$nodes"); do
    procs=""
    for name in compute-supervisor compute-abci cometbft compute-node; do
      if running "$i" "$name"; then
        procs="$procs${procs:+,}${name#compute-}"
      fi
    done
    up[i]="${procs:--}"
    heights[i]=""
    peer_counts[i]=""
    catch_flags[i]=""
    restarts[i]="-"
    if running "$i" compute-supervisor; then
      local count why
      read -r count why <<<"$(restarts_of "$i")"
      restarts[i]="$count"
      [ "$count" -eq 0 ] || notes+=("node $i: its supervisor restarted cometbft and compute-abci $(plural "$count" time) since it started; the last because: $why")
    elif running "$i" cometbft || running "$i" compute-abci; then
      notes+=("node $i: no supervisor runs, but its ${up[i]} does (see $(node_dir "$i")/compute-supervisor.log; '$self restart $i')")
    fi
    if running "$i" cometbft; then
      local s
      s="$(rpc_get "$i" status || true)"
      heights[i]="$(printf '%s' "$s" | json_field latest_block_height)"
      catch_flags[i]="$(printf '%s' "$s" | json_field catching_up)"
      peer_counts[i]="$(rpc_get "$i" net_info | json_field n_peers || true)"
      if is_uint "${heights[i]:-x}"; then
        any=1
        voting=$((voting + 1))
        if [ -z "$low" ] || [ "${heights[i]}" -lt "$low" ]; then low="${heights[i]}"; fi
      fi
    fi
  done
  echo "testnet $chain_id in $home: $(plural "$nodes" validator); a block needs more than 2/3 of them ($quorum)"
  if [ "$any" -eq 0 ]; then
    for i in $(seq 1 "$nodes"); do echo "node $i: ${up[i]}"; done
    [ "${#notes[@]}" -eq 0 ] || printf '%s\n' "${notes[@]}"
    echo "no node answers (start it with: $self start)"
    return 1
  fi
  local hashes=() first="" agree=1 answered=0
  printf '%-5s %-30s %-9s %-8s %-6s %-12s %s\n' node processes restarts height peers "catching up" "app hash in block $low's header"
  for i in $(seq 1 "$nodes"); do
    hashes[i]=""
    if is_uint "${heights[i]:-x}" && [ "$low" -ge 1 ]; then
      hashes[i]="$(rpc_get "$i" "commit?height=$low" | json_field app_hash || true)"
      if [ -n "${hashes[i]}" ]; then
        answered=$((answered + 1))
        [ -z "$first" ] && first="${hashes[i]}"
        [ "${hashes[i]}" = "$first" ] || agree=0
      fi
    fi
    printf '%-5s %-30s %-9s %-8s %-6s %-12s %s\n' "$i" "${up[i]}" "${restarts[i]}" "${heights[i]:--}" \
      "${peer_counts[i]:--}" "${catch_flags[i]:--}" "${hashes[i]:--}"
  done
  [ "${#notes[@]}" -eq 0 ] || printf '%s\n' "${notes[@]}"
  if [ "$voting" -lt "$quorum" ]; then
    echo "only $voting of the $nodes validators run: the chain makes no blocks until $quorum do ($self restart I)"
  fi
  if [ "$agree" -eq 1 ]; then
    echo "every node that answers ($answered) has the same app hash in block $low"
  else
    echo "warning: the nodes DISAGREE on block $low's app hash" >&2
    return 1
  fi
}

cmd_kill() {
  require_home
  check_index "${1:-}"
  local i="$1" pid killed=() line
  # The gateway first: with its validator gone it would only log errors.
  if running "$i" compute-node; then
    pid="$(pid_of "$i" compute-node)"
    kill -9 "$pid" 2>/dev/null || true
    killed+=("compute-node ($pid)")
  fi
  forget "$i" compute-node
  while IFS= read -r line; do killed+=("$line"); done < <(kill_unit "$i")
  if [ "${#killed[@]}" -eq 0 ]; then
    echo "node $i was not running"
  else
    local k
    k="$(printf '%s, ' "${killed[@]}")"
    echo "node $i: sent SIGKILL to ${k%, }"
    echo "(its run dir is left as a crash leaves it: '$self restart $i' repairs the event index first)"
  fi
}

# Waits (bounded: wait_secs) until node I's cometbft, a new one (not pid
# OLD, if given), reports height TARGET or more and is not catching up;
# prints the supervisor's log lines that come meanwhile when FOLLOW is the
# number of lines of its log to skip. Fails if the supervisor exits.
wait_in_step() {
  local i="$1" target="$2" old="${3:-}" follow="${4:-}" log s h n height=0 catching="" fresh=0
  local deadline=$((SECONDS + wait_secs))
  log="$(node_dir "$i")/compute-supervisor.log"
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ -n "$follow" ]; then
      n="$(wc -l <"$log")"
      if [ "$n" -gt "$follow" ]; then
        sed -n "$((follow + 1)),${n}p" "$log" | sed 's/^/  | /'
        follow="$n"
      fi
    fi
    running "$i" compute-supervisor || log_tail "$i" compute-supervisor
    fresh=0
    if running "$i" cometbft && [ "$(pid_of "$i" cometbft)" != "$old" ]; then fresh=1; fi
    if [ "$fresh" -eq 1 ]; then
      s="$(rpc_get "$i" status || true)"
      h="$(printf '%s' "$s" | json_field latest_block_height)"
      if is_uint "${h:-x}"; then height="$h"; fi
      catching="$(printf '%s' "$s" | json_field catching_up)"
      if [ "$height" -ge "$target" ] && [ "$catching" = false ]; then
        echo "node $i is at height $height and in step with the network"
        return 0
      fi
    fi
    sleep 0.5
  done
  if [ "$height" -ge "$target" ]; then
    echo "node $i is at height $height but still catching up after $wait_secs s; see $self status"
  else
    echo "node $i is at height $height (catching up: ${catching:-?}) and has not reached $target after $wait_secs s:" \
      "the network makes blocks only while more than 2/3 of its $nodes validators ($((2 * nodes / 3 + 1))) run; see $self status"
  fi
  return 1
}

cmd_crash() {
  require_home
  check_index "${1:-}"
  local i="$1" which="${2:-abci}" name
  case "$which" in
    abci | compute-abci) name="compute-abci" ;;
    cometbft) name=cometbft ;;
    *) die "crash I [cometbft|abci]: no child '$which'" ;;
  esac
  need_curl
  running "$i" compute-supervisor \
    || die "node $i has no running supervisor to recover it ('$self restart $i' starts one; '$self kill $i' crashes a whole node)"
  running "$i" "$name" \
    || die "node $i's $name is not running (its supervisor may be restarting it: see $self status)"
  local own others others_up old pid lines
  own="$(height_of "$i")"
  read -r others others_up <<<"$(others_height "$i")"
  old="$(pid_of "$i" cometbft 2>/dev/null || true)"
  lines="$(wc -l <"$(node_dir "$i")/compute-supervisor.log")"
  pid="$(pid_of "$i" "$name")"
  kill -9 "$pid" 2>/dev/null || true
  local target=$((${own:-0} > others ? ${own:-0} + 1 : others + 1))
  echo "node $i: sent SIGKILL to $name ($pid) at height ${own:-?} (the others: $others);" \
    "waiting up to $wait_secs s for its supervisor to restart both and for height $target; its log:"
  wait_in_step "$i" "$target" "$old" "$lines"
}

cmd_restart() {
  require_home
  check_index "${1:-}"
  local i="$1"
  need_binaries compute-abci compute-node compute-supervisor
  need_cometbft
  need_curl
  stop_nodes "$i"
  local others others_up
  read -r others others_up <<<"$(others_height "$i")"
  start_supervisor "$i"
  wait_port "$i" compute-supervisor "$(rpc_port "$i")" "$wait_secs"
  start_gateway "$i"
  wait_port "$i" compute-node "$(grpc_port "$i")"
  # It reports its stored height at once; wait for a block made after the
  # restart, above what the others had.
  local stored target
  stored="$(height_of "$i")"
  target=$((${stored:-0} > others ? ${stored:-0} + 1 : others + 1))
  if [ "$others_up" -gt 0 ]; then
    echo "node $i started at height ${stored:-?}; the other $(plural "$others_up" node) that run were at $others; waiting up to $wait_secs s for height $target"
  else
    echo "node $i started at height ${stored:-?} and no other node runs; waiting up to $wait_secs s for height $target"
  fi
  wait_in_step "$i" "$target" || true
}

cmd_reset() {
  if [ ! -e "$home" ]; then
    echo "no testnet in $home"
    return 0
  fi
  [ -f "$conf" ] || [ -z "$(ls -A "$home" 2>/dev/null)" ] \
    || die "$home holds no testnet.conf; not deleting it"
  case "$home" in / | "$root" | "$HOME") die "refusing to delete $home" ;; esac
  load_conf || true
  cmd_stop
  rm -rf "$home"
  echo "removed $home"
  # The next testnet is another chain under the same id: the headers the
  # CLI's light client trusted for this one would (rightly) refuse it.
  local trusted="${HOME:-.}/.compute/light/${chain_id:-compute-testnet}.json"
  if [ -f "$trusted" ]; then rm -f "$trusted"; echo "removed $trusted"; fi
}

# Writes the homes of a network of one validator per host into $out.
cmd_hosts() {
  need_binaries compute
  need_cometbft
  [ -n "$out" ] || die "--hosts needs --out DIR, the directory to write the homes into"
  local list=() host i j
  IFS=',' read -r -a list <<<"$hosts"
  if [ "${#list[@]}" -lt 1 ] || [ "${#list[@]}" -gt "$max_hosts" ]; then
    die "--hosts needs 1 to $max_hosts hosts"
  fi
  for i in "${!list[@]}"; do
    host="${list[i]}"
    [[ "$host" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] \
      || die "host '$host' is not a host name or IPv4 address (IPv6 is not supported here)"
    for j in "${!list[@]}"; do
      [ "$j" -lt "$i" ] && [ "${list[j]}" = "$host" ] && die "host $host is given twice (one validator per machine)"
    done
  done
  [ ! -e "$out" ] || [ -z "$(ls -A "$out" 2>/dev/null)" ] || die "$out exists and is not empty; name a new directory"
  local n="${#list[@]}"
  nodes="$n"
  chain_id="${opt_chain_id:-compute-testnet}"
  block_time="${opt_block_time:-1s}"
  local p2p=26656 rpc=26657 abci=26658 grpc=9090 metrics=9464
  [ -z "$opt_base_port" ] || echo "note: --base-port is for the loopback testnet; --hosts uses the standard ports" >&2
  mkdir -p "$out"
  trap 'rm -rf -- "$out"' EXIT
  out_node() { printf '%s/node%s\n' "$out" "$1"; }
  generate "$n" "$out/.generating" "$out/keys" out_node
  cp "$(out_node 1)/cometbft/config/genesis.json" "$out/genesis.json"
  local ids=()
  for i in $(seq 1 "$n"); do
    ids[i]="$(cometbft show-node-id --home "$(out_node "$i")/cometbft")"
  done
  for i in $(seq 1 "$n"); do
    local dir config peer_list=""
    dir="$(out_node "$i")"
    config="$dir/cometbft/config/config.toml"
    for j in $(seq 1 "$n"); do
      [ "$j" -eq "$i" ] && continue
      peer_list="${peer_list:+$peer_list,}${ids[j]}@${list[j - 1]}:$p2p"
    done
    configure_common "$dir" "$i"
    toml_set "$config" "" proxy_app "\"tcp://127.0.0.1:$abci\""
    toml_set "$config" rpc laddr "\"tcp://0.0.0.0:$rpc\""
    toml_set "$config" p2p laddr "\"tcp://0.0.0.0:$p2p\""
    toml_set "$config" p2p external_address "\"${list[i - 1]}:$p2p\""
    toml_set "$config" p2p persistent_peers "\"$peer_list\""
    toml_set "$config" p2p allow_duplicate_ip false
    mkdir -p "$dir/abci" "$dir/gateway"
  done
  local sum quorum=$((2 * n / 3 + 1))
  sum="$(sha256sum "$out/genesis.json" | cut -d ' ' -f 1)"
  {
    cat <<TXT
A network of $n validators: chain $chain_id, one validator per machine.
Written by scripts/testnet.sh --hosts ${hosts}; genesis sha256 $sum.

node   host
TXT
    for i in $(seq 1 "$n"); do printf '%-6s %s\n' "node$i" "${list[i - 1]}"; done
    cat <<TXT

This directory holds EVERY validator's secret keys: nodeI/cometbft/config/
priv_validator_key.json, node_key.json and nodeI/validator.json (the same
consensus key as a compute key file: the validator's account, funded with
$validator_balance credits). Copy each nodeI only to its own machine, keep
it private (chmod -R go-rwx), and delete this directory afterwards, except
keys/demo.json (an account funded with $demo_balance credits) and
keys/friend.json if you want them.

Every machine needs, on its PATH:
  - cometbft v0.38.25 (scripts/install-cometbft.sh puts it into .tools/bin)
  - compute-supervisor, compute-abci, compute-node and compute: \`cargo
    build --workspace --bins\` in a clone (then they are in
    \$HOME/.cache/compute/target/debug), or copied from a machine with the
    same OS and architecture.

Ports, on every machine:
  $p2p/tcp  CometBFT P2P: open between the validators
  $rpc/tcp  CometBFT RPC: open between the validators (each supervisor
             reads the others' heights, --peer-rpc, to tell a stuck node
             from a halted network), and to your clients for the compute
             CLI's --node, or use the CLI on the machines
  $grpc/tcp   the gateway's gRPC (clients and workers): open to them
  $abci/tcp  ABCI (compute-abci) and $metrics/tcp (the gateway's metrics)
             listen on 127.0.0.1 only

Steps, for each node I below (any order; the chain makes blocks once more
than 2/3 of the validators, $quorum of $n, are up, and every node keeps
dialling the others until it reaches them):

  1. From this machine, copy the node's home (here to ~/compute-testnet):
       rsync -a $(out_node I)/ HOST:compute-testnet/
     (or: scp -r $(out_node I) HOST:compute-testnet)
  2. On HOST, start the node's supervisor and its gateway:
       cd ~/compute-testnet
       compute-supervisor --cometbft-home cometbft --abci-arg=--home \\
           --abci-arg=abci ... --peer-rpc ... --run-dir run --log-dir .
       compute-node --home gateway --listen 0.0.0.0:$grpc \\
           --rpc http://127.0.0.1:$rpc --metrics 127.0.0.1:$metrics --peer ...
     (each node's exact commands, with its peers, are below). The
     supervisor starts compute-abci, then CometBFT, and restarts both when
     either dies or the node stops making blocks while its peers go on
     (docs/OPERATIONS.md, "Supervising a validator"). Or run both under
     systemd instead (see "Under systemd" below).
  3. Check it:  curl -s http://HOST:$rpc/status   (latest_block_height grows)
                compute --node http://HOST:$rpc status

Per node:
TXT
    for i in $(seq 1 "$n"); do
      local h="${list[i - 1]}" peers_flags="" rpc_peers_flags=""
      for j in $(seq 1 "$n"); do
        [ "$j" -eq "$i" ] && continue
        peers_flags="$peers_flags --peer http://${list[j - 1]}:$grpc"
        rpc_peers_flags="$rpc_peers_flags --peer-rpc http://${list[j - 1]}:$rpc"
      done
      cat <<TXT

node$i on $h:
  rsync -a $(out_node "$i")/ $h:compute-testnet/
  ssh $h
  cd ~/compute-testnet
  nohup compute-supervisor --cometbft-home cometbft --abci-arg=--home --abci-arg=abci --abci-arg=--addr --abci-arg=tcp://127.0.0.1:$abci --abci-addr tcp://127.0.0.1:$abci --rpc http://127.0.0.1:$rpc$rpc_peers_flags --run-dir run --log-dir . >>compute-supervisor.log 2>&1 &
  nohup compute-node --home gateway --listen 0.0.0.0:$grpc --rpc http://127.0.0.1:$rpc --metrics 127.0.0.1:$metrics$peers_flags >>compute-node.log 2>&1 & echo \$! >compute-node.pid
TXT
    done
    cat <<TXT

Once blocks come, from anywhere that reaches the RPC and the gateway:
  compute --node http://${list[0]}:$rpc status
  compute --node http://${list[0]}:$rpc transfer --key $out/keys/demo.json --to $out/keys/friend.json --amount 10
  compute --node http://${list[n - 1]}:$rpc account $out/keys/friend.json
  compute-sandbox --key worker.json --home ~/.compute-worker --gateway http://${list[0]}:$grpc ...

Logs, in ~/compute-testnet: compute-supervisor.log (what the supervisor did
and why), cometbft.log, compute-abci.log, compute-node.log. To stop a node:
  kill \$(cat compute-node.pid) \$(cat run/supervisor.pid)
(SIGTERM; the supervisor stops cometbft, then compute-abci). Start it again
with the same two lines; a node that was down catches up from its peers,
and after an unclean stop the supervisor repairs the event index first.
Block time: timeout_commit = "$block_time" in nodeI/cometbft/config/config.toml
([consensus]).

Under systemd: instead of the nohup lines, deploy/compute-validator.service
runs the supervisor and deploy/compute-node.service the gateway (restarted
on failure, stopped in order); deploy/README.md says how to install them.
They expect the node's home in /var/lib/compute (copy nodeI/ there: its
cometbft/, abci/ and gateway/; the supervisor keeps its run/ there) and the
binaries in /usr/local/bin. Replace their placeholder --peer-rpc and --peer
lines with the other hosts, as in the node's lines above.
TXT
  } >"$out/README.txt"
  trap - EXIT
  echo "wrote the homes of $n validators (chain $chain_id) into $out; read $out/README.txt"
  echo "note: $out holds every validator's secret key; copy each node only to its machine"
}

if [ -n "$hosts" ]; then
  [ "$#" -eq 0 ] || die "--hosts writes homes and starts nothing: give no command with it (see --help)"
  cmd_hosts
  exit 0
fi
[ -z "$out" ] || die "--out goes with --hosts (see --help)"

command="${1:-}"
[ "$#" -gt 0 ] && shift
case "$command" in
  start) [ "$#" -le 1 ] || die "usage: scripts/testnet.sh start [N]"; cmd_start "${1:-}" ;;
  stop) [ "$#" -eq 0 ] || die "usage: scripts/testnet.sh stop"; cmd_stop ;;
  status) [ "$#" -eq 0 ] || die "usage: scripts/testnet.sh status"; cmd_status ;;
  kill) [ "$#" -eq 1 ] || die "usage: scripts/testnet.sh kill I"; cmd_kill "$1" ;;
  crash)
    { [ "$#" -ge 1 ] && [ "$#" -le 2 ]; } || die "usage: scripts/testnet.sh crash I [cometbft|abci]"
    cmd_crash "$@" ;;
  restart) [ "$#" -eq 1 ] || die "usage: scripts/testnet.sh restart I"; cmd_restart "$1" ;;
  reset) [ "$#" -eq 0 ] || die "usage: scripts/testnet.sh reset"; cmd_reset ;;
  "") usage >&2; exit 2 ;;
  *) echo "error: unknown command '$command'" >&2; usage >&2; exit 2 ;;
esac
