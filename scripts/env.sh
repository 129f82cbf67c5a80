# Sourced by the project's scripts: one build location outside the clone,
# shared by every clone on the machine. Two profiles: `release` (what users
# run: scripts/run.sh, the Debian package, bench/) and `dev` (the tests).
# RocksDB is Debian's shared library, so neither compiles any C++.
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/tank/target}
TANK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The optimized binaries (cargo build --release).
TANK_BIN=$CARGO_TARGET_DIR/release
mkdir -p "$CARGO_TARGET_DIR"
