#!/bin/bash
# The whole test suite, as root on Debian 12: installs the Debian packages it
# needs, runs the unit and integration tests of the workspace. The static
# checks (fmt, clippy) are scripts/lint.sh; CI runs both.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$TANK_ROOT"

[ "$(id -u)" = 0 ] || { echo "test.sh: the tests need root" >&2; exit 1; }
./scripts/deps.sh

cargo test --workspace --locked --no-fail-fast -- --test-threads=2
