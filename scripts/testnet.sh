#!/usr/bin/env bash
# A local network of N validators on 127.0.0.1: per node, cometbft +
# compute-abci and a compute-node gateway; one genesis, peers by address.
#
#   scripts/testnet.sh start [N]    create (first time; N from 1 to 16,
#                                   default 4) and start every node
#   scripts/testnet.sh stop         stop every node
#   scripts/testnet.sh status       processes, height, peers and app hash
#                                   at a common height, per node
#   scripts/testnet.sh kill I       SIGKILL node I (a crash)
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

A network of N validators on 127.0.0.1. Each node I has its own cometbft,
compute-abci and compute-node gateway, homes, logs and ports; all share one
genesis whose app_state funds a demo key and every validator's key.

Commands:
  start [N]     create the testnet (first time; N from 1 to 16, default 4)
                and start whatever of it is not running; waits until every
                node reports a height of at least 2, then prints the nodes
  stop          stop every node (SIGTERM, then SIGKILL after 10 s)
  status        per node: processes, height, peers, and the app hash of the
                highest block all running nodes have (they must agree)
  kill I        SIGKILL node I's compute-node, cometbft and compute-abci
  restart I     start node I again: compute-abci, then cometbft, then the
                gateway (a running node is stopped first); waits a bounded
                time for it to catch up with the others
  reset         stop, and delete the testnet's home

  --hosts H1,H2,...  --out DIR
                write, without starting anything, the homes of a network of
                one validator per host (standard ports: P2P 26656, RPC 26657,
                ABCI 26658, gateway 9090, metrics 9464) into DIR, with
                DIR/README.txt saying how to start each machine

Options (and the environment variables they override):
  --home DIR          the testnet's home (TESTNET_HOME, default .testnet in
                      the clone): node1/ .. nodeN/, keys/, genesis.json
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

components=(compute-node cometbft compute-abci)

pidfile() { printf '%s/%s.pid\n' "$(node_dir "$1")" "$2"; }

# Whether node I's NAME runs: its pid file names a live process whose
# program is NAME (a stale pid reused by another program does not count).
running() {
  local file pid argv0=""
  file="$(pidfile "$1" "$2")"
  [ -f "$file" ] || return 1
  pid="$(cat "$file" 2>/dev/null || true)"
  is_uint "$pid" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    IFS= read -r -d '' argv0 <"/proc/$pid/cmdline" || true
    [ "${argv0##*/}" = "$2" ] || return 1
  fi
  return 0
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

# Waits (bounded: SECS, default 20) until node I's NAME accepts connections
# on PORT.
wait_port() {
  local i="$1" name="$2" port="$3" secs="${4:-20}" _
  for _ in $(seq 1 $((secs * 10))); do
    port_open "$port" && return 0
    running "$i" "$name" || log_tail "$i" "$name"
    sleep 0.1
  done
  die "$name of node $i does not listen on 127.0.0.1:$port after $secs s; see $(node_dir "$i")/$name.log"
}

start_abci() {
  local i="$1" dir
  dir="$(node_dir "$i")"
  running "$i" compute-abci && return 0
  need_free "$(abci_port "$i")"
  RUST_LOG="${RUST_LOG:-info}" nohup "$COMPUTE_BIN_DIR/compute-abci" --home "$dir/abci" \
    --addr "tcp://127.0.0.1:$(abci_port "$i")" >>"$dir/compute-abci.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$i" compute-abci)"
}

start_cometbft() {
  local i="$1" dir
  dir="$(node_dir "$i")"
  running "$i" cometbft && return 0
  running "$i" compute-abci || die "compute-abci of node $i is not running"
  need_free "$(p2p_port "$i")" "$(rpc_port "$i")"
  nohup cometbft node --home "$dir/cometbft" >>"$dir/cometbft.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$i" cometbft)"
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
}

# Stops the given "I:NAME" processes together: SIGTERM, up to 10 s, SIGKILL.
terminate() {
  local item live=() pids=() _
  for item in "$@"; do
    if running "${item%%:*}" "${item#*:}"; then
      live+=("$item")
      pids+=("$(cat "$(pidfile "${item%%:*}" "${item#*:}")")")
    else
      rm -f "$(pidfile "${item%%:*}" "${item#*:}")"
    fi
  done
  [ "${#live[@]}" -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 100); do
    local any=0
    for item in "${live[@]}"; do running "${item%%:*}" "${item#*:}" && any=1; done
    [ "$any" -eq 0 ] && break
    sleep 0.1
  done
  for item in "${live[@]}"; do
    if running "${item%%:*}" "${item#*:}"; then
      echo "node ${item%%:*}: ${item#*:} ignored SIGTERM for 10 s; sending SIGKILL"
      kill -9 "$(cat "$(pidfile "${item%%:*}" "${item#*:}")")" 2>/dev/null || true
    fi
    rm -f "$(pidfile "${item%%:*}" "${item#*:}")"
    echo "node ${item%%:*}: stopped ${item#*:}"
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
  need_binaries compute compute-abci compute-node
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

  local todo=()
  for i in $(seq 1 "$nodes"); do
    if ! running "$i" compute-abci || ! running "$i" cometbft || ! running "$i" compute-node; then
      todo+=("$i")
    fi
  done
  if [ "${#todo[@]}" -eq 0 ]; then
    echo "testnet already running ($(plural "$nodes" node) in $home)"
    cmd_status
    return 0
  fi
  # Check every port first, so a clash stops the start before anything runs.
  for i in "${todo[@]}"; do
    running "$i" compute-abci || need_free "$(abci_port "$i")"
    running "$i" cometbft || need_free "$(p2p_port "$i")" "$(rpc_port "$i")"
    running "$i" compute-node || need_free "$(grpc_port "$i")" "$(metrics_port "$i")"
  done
  echo "starting node(s) ${todo[*]} of $nodes in $home"
  for i in "${todo[@]}"; do start_abci "$i"; done
  for i in "${todo[@]}"; do wait_port "$i" compute-abci "$(abci_port "$i")"; done
  for i in "${todo[@]}"; do start_cometbft "$i"; done

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
      running "$i" cometbft || log_tail "$i" cometbft
      running "$i" compute-abci || log_tail "$i" compute-abci
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
    die "not every node reached height ${target:-2} after $wait_secs s (heights: ${heights[*]}); see $home/node*/cometbft.log and compute-abci.log"
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
  $self kill $second; $self restart $second
Stop with: $self stop
MSG
}

cmd_stop() {
  if ! load_conf; then
    echo "no testnet in $home"
    return 0
  fi
  local i name items
  for name in "${components[@]}"; do
    items=()
    for i in $(seq 1 "$nodes"); do items+=("$i:$name"); done
    terminate "${items[@]}"
  done
}

cmd_status() {
  require_home
  need_curl
  local i name up=() heights=() peer_counts=() catch_flags=() procs low="" any=0 voting=0
  local quorum=$((2 * nodes / 3 + 1))
  for i in $(seq 1 "$nodes"); do
    procs=""
    for name in compute-abci cometbft compute-node; do
      if running "$i" "$name"; then
        procs="$procs${procs:+,}${name#compute-}"
      fi
    done
    up[i]="${procs:--}"
    heights[i]=""
    peer_counts[i]=""
    catch_flags[i]=""
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
    echo "no node answers (start it with: $self start)"
    return 1
  fi
  local hashes=() first="" agree=1 answered=0
  printf '%-5s %-22s %-8s %-6s %-12s %s\n' node processes height peers "catching up" "app hash in block $low's header"
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
    printf '%-5s %-22s %-8s %-6s %-12s %s\n' "$i" "${up[i]}" "${heights[i]:--}" "${peer_counts[i]:--}" \
      "${catch_flags[i]:--}" "${hashes[i]:--}"
  done
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
  local i="$1" name pid killed=()
  for name in "${components[@]}"; do
    if running "$i" "$name"; then
      pid="$(cat "$(pidfile "$i" "$name")")"
      kill -9 "$pid" 2>/dev/null || true
      killed+=("$name ($pid)")
    fi
    rm -f "$(pidfile "$i" "$name")"
  done
  if [ "${#killed[@]}" -eq 0 ]; then
    echo "node $i was not running"
  else
    local k
    k="$(printf '%s, ' "${killed[@]}")"
    echo "node $i: sent SIGKILL to ${k%, }"
  fi
}

cmd_restart() {
  require_home
  check_index "${1:-}"
  local i="$1" j
  need_binaries compute-abci compute-node
  need_cometbft
  need_curl
  terminate "$i:compute-node" "$i:cometbft" "$i:compute-abci"
  local others=0 others_up=0 h
  for j in $(seq 1 "$nodes"); do
    [ "$j" -eq "$i" ] && continue
    running "$j" cometbft || continue
    h="$(height_of "$j")"
    [ -n "$h" ] || continue
    others_up=$((others_up + 1))
    if [ "$h" -gt "$others" ]; then others="$h"; fi
  done
  start_abci "$i"
  wait_port "$i" compute-abci "$(abci_port "$i")"
  start_cometbft "$i"
  wait_port "$i" cometbft "$(rpc_port "$i")" "$wait_secs"
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
  local _ s height=0 catching=""
  for _ in $(seq 1 $((wait_secs * 2))); do
    running "$i" cometbft || log_tail "$i" cometbft
    s="$(rpc_get "$i" status || true)"
    h="$(printf '%s' "$s" | json_field latest_block_height)"
    if is_uint "${h:-x}"; then height="$h"; fi
    catching="$(printf '%s' "$s" | json_field catching_up)"
    if [ "$height" -ge "$target" ] && [ "$catching" = false ]; then break; fi
    sleep 0.5
  done
  if [ "$height" -ge "$target" ] && [ "$catching" = false ]; then
    echo "node $i is at height $height and in step with the network"
  else
    echo "node $i is at height $height (catching up: ${catching:-?}) and has not reached $target:" \
      "the network makes blocks only while more than 2/3 of its $nodes validators ($((2 * nodes / 3 + 1))) run; see $self status"
  fi
}

cmd_reset() {
  if [ ! -e "$home" ]; then
    echo "no testnet in $home"
    return 0
  fi
  [ -f "$conf" ] || [ -z "$(ls -A "$home" 2>/dev/null)" ] \
    || die "$home holds no testnet.conf; not deleting it"
  case "$home" in / | "$root" | "$HOME") die "refusing to delete $home" ;; esac
  cmd_stop
  rm -rf "$home"
  echo "removed $home"
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
  - compute-abci, compute-node and compute: \`cargo build --workspace --bins\`
    in a clone (then they are in \$HOME/.cache/compute/target/debug), or
    copied from a machine with the same OS and architecture.

Ports, on every machine:
  $p2p/tcp  CometBFT P2P: open between the validators
  $rpc/tcp  CometBFT RPC (the compute CLI's --node): open to your clients,
             or firewall it and use the CLI on the machine
  $grpc/tcp   the gateway's gRPC (clients and workers): open to them
  $abci/tcp  ABCI (compute-abci) and $metrics/tcp (the gateway's metrics)
             listen on 127.0.0.1 only

Steps, for each node I below (any order; the chain makes blocks once more
than 2/3 of the validators, $quorum of $n, are up, and every node keeps
dialling the others until it reaches them):

  1. From this machine, copy the node's home (here to ~/compute-testnet):
       rsync -a $(out_node I)/ HOST:compute-testnet/
     (or: scp -r $(out_node I) HOST:compute-testnet)
  2. On HOST, start the state machine first, then CometBFT, then the
     gateway, each in its own terminal or under a service manager:
       cd ~/compute-testnet
       compute-abci --home abci --addr tcp://127.0.0.1:$abci
       cometbft node --home cometbft
       compute-node --home gateway --listen 0.0.0.0:$grpc \\
           --rpc http://127.0.0.1:$rpc --metrics 127.0.0.1:$metrics --peer ...
     (the exact gateway command of each node, with its peers, is below)
  3. Check it:  curl -s http://HOST:$rpc/status   (latest_block_height grows)
                compute --node http://HOST:$rpc status

Per node:
TXT
    for i in $(seq 1 "$n"); do
      local h="${list[i - 1]}" peers_flags=""
      for j in $(seq 1 "$n"); do
        [ "$j" -eq "$i" ] || peers_flags="$peers_flags --peer http://${list[j - 1]}:$grpc"
      done
      cat <<TXT

node$i on $h:
  rsync -a $(out_node "$i")/ $h:compute-testnet/
  ssh $h
  cd ~/compute-testnet
  nohup compute-abci --home abci --addr tcp://127.0.0.1:$abci >>compute-abci.log 2>&1 &
  nohup cometbft node --home cometbft >>cometbft.log 2>&1 &
  nohup compute-node --home gateway --listen 0.0.0.0:$grpc --rpc http://127.0.0.1:$rpc --metrics 127.0.0.1:$metrics$peers_flags >>compute-node.log 2>&1 &
TXT
    done
    cat <<TXT

Once blocks come, from anywhere that reaches the RPC and the gateway:
  compute --node http://${list[0]}:$rpc status
  compute --node http://${list[0]}:$rpc transfer --key $out/keys/demo.json --to $out/keys/friend.json --amount 10
  compute --node http://${list[n - 1]}:$rpc account $out/keys/friend.json
  compute-sandbox --key worker.json --home ~/.compute-worker --gateway http://${list[0]}:$grpc ...

To stop a node, send SIGTERM (kill PID) to compute-node, then cometbft, then
compute-abci. Restart in the order of step 2; a node that was down catches
up from its peers. Block time: timeout_commit = "$block_time" in
nodeI/cometbft/config/config.toml ([consensus]).
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
  restart) [ "$#" -eq 1 ] || die "usage: scripts/testnet.sh restart I"; cmd_restart "$1" ;;
  reset) [ "$#" -eq 0 ] || die "usage: scripts/testnet.sh reset"; cmd_reset ;;
  "") usage >&2; exit 2 ;;
  *) echo "error: unknown command '$command'" >&2; usage >&2; exit 2 ;;
esac
