#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian or Ubuntu machine:
# a C/C++ toolchain and libclang (RocksDB's bindings), the wasm32 Rust target
# (example jobs), rustfmt and clippy (scripts/test.sh), Python 3 with PyNaCl
# (scripts/check-vectors.py), and CometBFT (scripts/install-cometbft.sh).
# Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(build-essential libclang-dev pkg-config curl python3 python3-nacl)
missing=()
if command -v dpkg >/dev/null 2>&1; then
  for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: Rust is not installed: install it with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown
  # scripts/test.sh checks formatting and lints.
  components="$(rustup component list --installed 2>/dev/null || true)"
  for c in rustfmt clippy; do
    grep -q "^$c" <<<"$components" || rustup component add "$c"
  done
fi

"$root/scripts/install-cometbft.sh"
