#!/bin/bash
# The whole test suite, as root on Debian 12: installs the Debian packages it
# needs, checks formatting and lints, runs unit and integration tests.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$TANK_ROOT"

[ "$(id -u)" = 0 ] || { echo "test.sh: the tests need root" >&2; exit 1; }
./scripts/deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast -- --test-threads=2
