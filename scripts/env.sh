# Sourced by the project's scripts: the build location of this clone, outside
# it, under /var/cache/tank/target/. One directory per clone, never shared:
# cargo fingerprints a workspace member by the files of the clone that built
# it, so a second clone building into the same directory would be handed
# the first one's binaries as "fresh" (seen: a new module missing from a
# test binary). Two profiles: `release` (what users run: scripts/run.sh, the
# Debian package, bench/) and `dev` (the tests). RocksDB is Debian's shared
# library, so neither compiles any C++.
export PATH="$HOME/.cargo/bin:$PATH"
TANK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    # The clone's name and a hash of its path: readable and unique.
    CARGO_TARGET_DIR=/var/cache/tank/target/$(basename "$TANK_ROOT")-$(printf %s "$TANK_ROOT" | sha256sum | cut -c1-12)
fi
export CARGO_TARGET_DIR
# The optimized binaries (cargo build --release).
TANK_BIN=$CARGO_TARGET_DIR/release
mkdir -p "$CARGO_TARGET_DIR"
