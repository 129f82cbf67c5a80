#!/bin/bash
# The real-systemd test: boots a throwaway Debian 12 VM (systemd 252, pure
# cgroup v2, system D-Bus, polkit) with ../shared/vm/vm-run.sh and runs
# guest-*.sh there against this build of tankd. As root.
set -euo pipefail
. "$(dirname "$0")/../../scripts/env.sh"
cd "$TANK_ROOT"
VM_RUN=${VM_RUN:-$TANK_ROOT/../shared/vm/vm-run.sh}
[ -x "$VM_RUN" ] || { echo "vm: $VM_RUN not found" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
for p in mmdebstrap qemu-system-x86 e2fsprogs busybox-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || apt-get install -y -qq --no-install-recommends "$p" >/dev/null
done
cargo build --locked --bins
share=$(mktemp -d /var/tmp/tank-vm.XXXXXX)
trap 'rm -rf "$share"' EXIT
cp "$TANK_BIN/tankd" "$TANK_BIN/tankctl" /bin/busybox dbus/org.tank.Manager.conf systemd/tankd.service "$share/"
status=0
for guest in tests/vm/guest-*.sh; do
    echo "vm: $guest"
    "$VM_RUN" --timeout 900 "$share" "$guest" || { echo "vm: $guest failed ($?)"; status=1; }
done
exit $status
