#!/bin/bash
# The real-systemd test: boots a throwaway Debian 12 VM (systemd 252, pure
# cgroup v2, system D-Bus, polkit) with ../shared/vm/vm-run.sh and runs
# guest-*.sh there, each in its own boot, against this build's Debian
# package (`run.sh tests/vm/guest-X.sh …`: only those). Prints "vm: N
# passed, M failed". As root.
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
# The guest has no network, so `dpkg -i` cannot fetch the package's
# dependencies: the image has them already (dbus, polkitd and adduser are
# in vm-run's recipe; Debian's RocksDB, which tankd links, is added here).
export VM_EXTRA_PACKAGES="${VM_EXTRA_PACKAGES:-} librocksdb7.8"
# The package under test, built as a user would (packaging/build-deb.sh);
# each guest script installs it in its own fresh VM.
deb=$(packaging/build-deb.sh | tail -n 1)
share=$(mktemp -d /var/tmp/tank-vm.XXXXXX)
trap 'rm -rf "$share"' EXIT
cp "$deb" /bin/busybox tests/vm/lib.sh "$share/"
# An image to import in the guest, as a user without a registry would.
tests/vm/oci-archive.sh "$share/busybox.oci.tar" localhost/vm/busybox:1
# Arguments: the guest scripts to run (default: every tests/vm/guest-*.sh).
guests=("$@")
[ ${#guests[@]} -gt 0 ] || guests=(tests/vm/guest-*.sh)
passed=0 failed=0
for guest in "${guests[@]}"; do
    echo "vm: $guest"
    if "$VM_RUN" --timeout 900 "$share" "$guest"; then
        passed=$((passed+1))
    else
        echo "vm: $guest failed ($?)"
        failed=$((failed+1))
    fi
done
echo "vm: $passed passed, $failed failed"
[ "$failed" = 0 ]
