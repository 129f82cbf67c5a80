# Sourced by the project's scripts: one build location and profile for
# everything (tests, the run command, benches), outside the clone, so the
# ~15 minute RocksDB C++ build happens once per machine.
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/tank/target}
TANK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TANK_BIN=$CARGO_TARGET_DIR/debug
mkdir -p "$CARGO_TARGET_DIR"
