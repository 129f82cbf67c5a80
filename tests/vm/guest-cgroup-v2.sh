#!/bin/bash
# Guest side of tests/vm/run.sh, inside a Debian 12 VM with systemd 252, a
# pure cgroup v2 hierarchy and a system D-Bus: tankd installed as the
# systemd service of its Debian package (Type=notify, Delegate=yes),
# containers with limits in its delegated subtree. Exit status = number of
# failed checks.
set -u
. "${VMRUN_SHARED:-/mnt/host}/lib.sh"

check "install the package" install_tank
R=/var/lib/tank-vm/rootfs
busybox_rootfs "$R"

# The package started it (Type=notify: active only after READY=1).
check "tankd is active after install" systemctl is-active --quiet tankd
systemctl show -p ActiveState,SubState,StatusText,ControlGroup tankd | sed 's/^/    /'
main=$(systemctl show -p MainPID --value tankd)
cg=$(systemctl show -p ControlGroup --value tankd)
check "tankd stays in its service's cgroup" grep -qx "0::$cg" "/proc/$main/cgroup"
check "which enables no controller (systemd can start a new tankd there)" \
    test -z "$(cat "/sys/fs/cgroup$cg/cgroup.subtree_control")"
# The pods' delegated scope beside it, kept alive by tankd's pause process.
base=/sys/fs/cgroup/system.slice/tankd-pods.scope
check "tankd-pods.scope is delegated" sh -c "systemctl show -p Delegate --value tankd-pods.scope | grep -q yes"
check "its pause process sits in the supervisor leaf" test -n "$(cat "$base/supervisor/cgroup.procs")"
echo "    $base/cgroup.subtree_control: $(cat "$base/cgroup.subtree_control")"
check "controllers enabled for pods" grep -q memory "$base/pods/cgroup.subtree_control"

cat > /tmp/limited.json <<EOT
{"name": "limited", "containers": [{"name": "main", "image": {"rootfs": "$R"},
  "command": ["/bin/sh", "-c", "cat /sys/fs/cgroup/memory.max; exec sleep 1000"],
  "limits": {"memory": 67108864, "pids": 20, "cpu": {"quota_us": 50000, "period_us": 100000}}}]}
EOT
check "apply a pod with limits" tankctl apply -f /tmp/limited.json
check "it runs" wait_for limited '"running"'
ccg=$base/pods/limited/main
check "its cgroup is in tankd's delegated subtree" test -d "$ccg"
pid=$(tankctl get limited -o json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' | head -1)
check "the container's PID 1 is in it" grep -qx "$pid" "$ccg/cgroup.procs"
check "memory.max = 64 MiB" grep -qx 67108864 "$ccg/memory.max"
check "pids.max = 20" grep -qx 20 "$ccg/pids.max"
check "cpu.max = 50000 100000" grep -qx "50000 100000" "$ccg/cpu.max"

# What the container sees: its own cgroup as the root of its cgroup
# namespace and of a read-only cgroup2 mount on /sys/fs/cgroup, with its
# limits, and nothing above or beside it.
inside() { tankctl exec limited -- "$@"; }
is() {  # is WHAT EXPECTED CMD...: CMD prints exactly EXPECTED
    local what=$1 want=$2 got; shift 2
    got=$("$@" 2>&1)
    if [ "$got" = "$want" ]; then ok "$what"; else bad "$what (got: $got)"; fi
}
is "inside: memory.max = 64 MiB" 67108864 inside cat /sys/fs/cgroup/memory.max
is "inside: pids.max = 20" 20 inside cat /sys/fs/cgroup/pids.max
is "inside: cpu.max = 50000 100000" "50000 100000" inside cat /sys/fs/cgroup/cpu.max
is "inside: /proc/self/cgroup of an exec is 0::/" "0::/" inside cat /proc/self/cgroup
is "inside: /proc/1/cgroup is 0::/" "0::/" inside cat /proc/1/cgroup
is "inside: no cgroup below its own (no pods dir, no other pod)" '/sys/fs/cgroup/*/' \
    inside sh -c 'echo /sys/fs/cgroup/*/'
check "inside: its PID 1 is at the root" sh -c "tankctl exec limited -- cat /sys/fs/cgroup/cgroup.procs | grep -qx 1"
check "inside: a read-only cgroup2 mount of its own cgroup" sh -c \
    "tankctl exec limited -- cat /proc/self/mountinfo | grep -q ' / /sys/fs/cgroup ro,nosuid,nodev,noexec.* - cgroup2 '"
check "inside: writing a limit fails (EROFS)" sh -c \
    "tankctl exec limited -- sh -c 'echo 5 > /sys/fs/cgroup/pids.max' 2>&1 | grep -q 'Read-only file system'"
check "the limit is unchanged" grep -qx 20 "$ccg/pids.max"
is "PID 1 read its memory.max at start" 67108864 tankctl logs limited

cat > /tmp/oom.json <<EOT
{"name": "oom", "restart": "never", "containers": [{"name": "main", "image": {"rootfs": "$R"},
  "command": ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
  "limits": {"memory": 33554432}}]}
EOT
check "apply a pod over its memory limit" tankctl apply -f /tmp/oom.json
check "OOMKilled from memory.events" wait_for oom '"OOMKilled"'

check "delete --wait" tankctl delete --wait limited
for _ in $(seq 100); do [ -d "$ccg" ] || break; sleep 0.2; done
check "its cgroup is gone" test ! -d "$base/pods/limited"
check "its process is gone" test ! -d "/proc/$pid"
check "journalctl -u tankd has tankd's log" sh -c "journalctl -u tankd --no-pager | grep -q 'serving org.tank.Manager'"

systemctl stop tankd
finish
