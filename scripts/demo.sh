#!/usr/bin/env bash
# The demo: on a fresh machine, installs what is missing, builds, starts a
# local single-validator network, sends a signed transfer through CometBFT,
# and reads the result back through /abci_query. Stops the network at the
# end unless --keep is given.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh
keep=0
[ "${1:-}" = "--keep" ] && keep=1

scripts/setup.sh
scripts/devnet.sh start
home="${DEVNET_HOME:-$root/.devnet}"
rpc="http://127.0.0.1:${DEVNET_RPC_PORT:-26657}"
compute="$COMPUTE_BIN_DIR/compute"
[ "$keep" -eq 1 ] || trap 'scripts/devnet.sh stop' EXIT

friend="$("$compute" keys show "$home/keys/friend.json")"
echo
echo "== transfer 250 credits from the demo key to $friend"
"$compute" --node "$rpc" transfer --key "$home/keys/demo.json" --to "$friend" --amount 250
echo
echo "== the friend's account, read with curl through CometBFT's /abci_query"
answer="$(curl -s "$rpc/abci_query?path=%22/account/$friend%22")"
echo "$answer"
value="$(echo "$answer" | sed -n 's/.*"value": *"\([^"]*\)".*/\1/p')"
echo "decoded value: $(echo "$value" | base64 -d)"
echo
echo "== the validator's consensus key is an account: it earns the block reward"
validator="$("$compute" keys show "$home/keys/validator.json")"
"$compute" --node "$rpc" account "$validator"
"$compute" --node "$rpc" query "/reputation/$validator"
echo
echo "== chain statistics"
"$compute" --node "$rpc" query /stats
if [ "$keep" -eq 1 ]; then
  echo; echo "devnet left running (scripts/devnet.sh stop to stop it)"
fi
