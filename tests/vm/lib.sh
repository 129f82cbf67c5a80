# Shared helpers of the guest scripts (tests/vm/guest-*.sh), sourced from
# the VM share: `. "${VMRUN_SHARED:-/mnt/host}/lib.sh"`. tests/vm/run.sh
# puts it there next to the package (tank_*.deb) and busybox. Every guest
# script runs in its own VM boot, so each installs the package itself.
#
#   ok MSG / bad MSG         report one check (bad counts a failure)
#   check MSG CMD...         ok if CMD succeeds, else bad
#   wait_for POD GREP        until `tankctl get POD -o json` matches GREP (60 s)
#   install_tank             dpkg -i the package: tankd enabled and started
#   busybox_rootfs DIR       a root filesystem with busybox for pods
#   finish                   print the count and exit with it
#
# The exit status of a guest script is its number of failed checks.

H=${VMRUN_SHARED:-/mnt/host}
fails=0

ok()  { echo "  [ok]   $*"; }
bad() { echo "  [FAIL] $*"; fails=$((fails+1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

wait_for() {  # wait_for POD GREP
    for _ in $(seq 300); do
        tankctl get "$1" -o json 2>/dev/null | grep -q "$2" && return 0
        sleep 0.2
    done
    tankctl get "$1" -o json; return 1
}

# Installs $H/tank_*.deb the way an administrator would: its postinst
# creates group tank, reloads the bus, enables and starts tankd.service
# (Type=notify: it returns once tankd sent READY=1). The VM image keeps no
# docs or man pages (a dpkg path-exclude); tank's are let through, so the
# package's man pages and examples can be checked (with their directories:
# an excluded directory is not created). Returns dpkg's status.
install_tank() {
    local debs=("$H"/tank_*.deb)
    if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
        echo "install_tank: want exactly one $H/tank_*.deb, found: ${debs[*]}" >&2
        return 1
    fi
    cat > /etc/dpkg/dpkg.cfg.d/zz-tank-docs <<'EOT'
path-include=/usr/share/doc/tank
path-include=/usr/share/doc/tank/*
path-include=/usr/share/man/man1
path-include=/usr/share/man/man1/tankctl*
path-include=/usr/share/man/man8
path-include=/usr/share/man/man8/tankd*
EOT
    DEBIAN_FRONTEND=noninteractive dpkg -i "${debs[0]}"
}

busybox_rootfs() {  # busybox_rootfs DIR
    local r=$1
    mkdir -p "$r/bin" "$r/etc" "$r/tmp"
    install -m 0755 "$H/busybox" "$r/bin/busybox"
    for a in sh sleep dd cat echo true; do ln -sf busybox "$r/bin/$a"; done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
    echo 'root:x:0:' > "$r/etc/group"
}

finish() {
    echo "guest: $fails failed"
    exit "$fails"
}
