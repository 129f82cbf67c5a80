#!/bin/bash
# The project's static checks, as CI runs them before the tests: formatting
# and clippy with every warning an error, over the whole workspace and all
# targets (tests and benches included). Needs no root and starts nothing.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$TANK_ROOT"

if [ "$(id -u)" = 0 ]; then
    ./scripts/deps.sh
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
