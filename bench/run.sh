#!/bin/bash
# Side-by-side benchmarks of Tank and its peers, as root.
#   bench/run.sh pull     pull+unpack of a ~100 MB 5-layer image: tank vs podman vs tar
#   bench/run.sh start    start→exit of busybox /bin/true: tank vs podman vs crun/runc vs unshare
#   bench/run.sh net      netns + one macvlan NIC per pod: tank vs the equivalent `ip` commands
#   bench/run.sh scale    200 pods at once → Running, tankd RSS and idle CPU, exit → restart
#   bench/run.sh exec     exec of /bin/true in a running container: tank vs podman exec vs nsenter
# Installs the peers (podman, crun, runc) if missing. Measures the release
# build (what users run: the binaries scripts/run.sh and the package use).
set -euo pipefail
. "$(dirname "$0")/../scripts/env.sh"
cd "$TANK_ROOT"
[ "$(id -u)" = 0 ] || { echo "bench: run me as root" >&2; exit 1; }
./scripts/deps.sh
peers=(podman crun runc)
missing=()
for p in "${peers[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# tankctl is another package: build both binaries first (no-op when fresh).
cargo build --release --locked --bins
case "${1:-}" in
    pull) exec cargo bench -p tankd --profile release --bench pull ;;
    start) exec cargo bench -p tankd --profile release --bench start ;;
    net) exec cargo bench -p tankd --profile release --bench net ;;
    scale) exec cargo bench -p tankd --profile release --bench scale ;;
    exec) exec cargo bench -p tankd --profile release --bench exec ;;
    *) echo "usage: bench/run.sh pull|start|net|scale|exec" >&2; exit 2 ;;
esac
