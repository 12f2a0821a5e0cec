# Sourced by the scripts: one cargo target directory per machine, outside the
# clone, so the bundled RocksDB (slow to compile) is built once and reused.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/compute/target}"
export PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/bin:$PATH"
# The project's binaries, as built by `cargo build --workspace --bins`.
COMPUTE_BIN_DIR="$CARGO_TARGET_DIR/debug"
