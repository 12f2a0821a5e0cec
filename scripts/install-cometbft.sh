#!/usr/bin/env bash
# Installs CometBFT (the `cometbft` node and `abci-cli`) at the version this
# project speaks, with `go install`, into the project-local tools directory.
#
#   scripts/install-cometbft.sh          install if missing, print the version
#   COMETBFT_TOOLS_DIR=DIR ...           install into DIR/bin instead
#
# tendermint-abci 0.41 speaks the ABCI protocol of CometBFT v0.38; v0.39 and
# later send requests its server does not know, so the version is pinned.
set -euo pipefail

COMETBFT_VERSION="v0.38.25"
MODULE="github.com/cometbft/cometbft"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${COMETBFT_TOOLS_DIR:-$root/.tools}"
bin="$tools/bin"

installed_version() {
  # `cometbft version` prints e.g. "0.38.25" (no leading v).
  [ -x "$bin/cometbft" ] && [ -x "$bin/abci-cli" ] || return 1
  "$bin/cometbft" version 2>/dev/null | head -n 1
}

if [ "$(installed_version || true)" = "${COMETBFT_VERSION#v}" ]; then
  echo "cometbft ${COMETBFT_VERSION#v} already installed in $bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
error: Go is not installed, and CometBFT is installed with 'go install'.
  Install Go 1.22 or newer (Debian: 'apt-get install golang-go', or the
  official tarball), make sure 'go' is on PATH, and run this script again.
MSG
  exit 1
fi

mkdir -p "$bin"
echo "installing cometbft and abci-cli $COMETBFT_VERSION into $bin (go install; first time takes a few minutes)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! GOBIN="$bin" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install \
  "$MODULE/cmd/cometbft@$COMETBFT_VERSION" \
  "$MODULE/abci/cmd/abci-cli@$COMETBFT_VERSION" >"$log" 2>&1; then
  cat "$log" >&2
  if grep -q -E 'sum.golang.org|verifying .*module|checksum database' "$log"; then
    cat >&2 <<MSG

error: go could not reach the Go checksum database to verify the modules.
  If this machine can reach a module proxy but not the checksum database,
  run again with the database switched off for this install only:
      GONOSUMDB='*' GONOSUMCHECK=1 GOSUMDB=off $0
  (the module proxy still serves the exact tagged versions).
MSG
  elif grep -q -E 'proxy.golang.org|dial tcp|no such host|i/o timeout' "$log"; then
    cat >&2 <<MSG

error: go could not download the modules. Check that the Go module proxy is
  reachable (GOPROXY=$(go env GOPROXY)) or point GOPROXY at a mirror.
MSG
  fi
  exit 1
fi

version="$(installed_version || true)"
if [ "$version" != "${COMETBFT_VERSION#v}" ]; then
  echo "error: installed cometbft reports version '$version', expected ${COMETBFT_VERSION#v}" >&2
  exit 1
fi
echo "cometbft $version installed in $bin"
