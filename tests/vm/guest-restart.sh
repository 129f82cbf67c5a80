#!/bin/bash
# Guest side of tests/vm/run.sh: a crash-only tankd under real systemd 252
# on cgroup v2, running a pod of an imported image (overlay of its unpacked
# layer). Containers with limits live in the delegated scope
# tankd-pods.scope; `systemctl restart`, a stop and start, and kill -9 of
# tankd (Restart=on-failure) all bring up a new tankd that adopts them: same
# PIDs, no restart counted. WATCHDOG=1 comes from the loop.
# Exit status = number of failed checks.
set -u
. "${VMRUN_SHARED:-/mnt/host}/lib.sh"

check "install the package (enables and starts tankd)" install_tank

pid_of() { tankctl get "$1" -o json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' | head -1; }
restarts_of() { tankctl get "$1" -o json | sed -n 's/.*"restart_count": *\([0-9]*\).*/\1/p' | head -1; }
active() {
    for _ in $(seq 100); do
        [ "$(systemctl is-active tankd)" = active ] && return 0
        sleep 0.2
    done
    systemctl status tankd --no-pager; return 1
}

check "tankd is active after install" systemctl is-active --quiet tankd
check "import an image (OCI archive)" tankctl image import "$H/busybox.oci.tar"
cat > /tmp/web.json <<EOT
{"name": "web", "containers": [{"name": "main", "image": "localhost/vm/busybox:1",
  "command": ["/bin/sh", "-c", "while true; do echo tick; sleep 1; done"],
  "limits": {"memory": 67108864, "pids": 20}}]}
EOT
check "apply a pod with limits" tankctl apply -f /tmp/web.json
check "it runs" wait_for web '"running"'
pid=$(pid_of web)
svc=$(systemctl show -p ControlGroup --value tankd)
scope=/sys/fs/cgroup/system.slice/tankd-pods.scope
check "the container is in the delegated scope, not in tankd's cgroup" \
    grep -qx "0::/system.slice/tankd-pods.scope/pods/web/main" "/proc/$pid/cgroup"
check "memory.max = 64 MiB in the scope" grep -qx 67108864 "$scope/pods/web/main/memory.max"
check "tankd's own cgroup enables no controller" test -z "$(cat "/sys/fs/cgroup$svc/cgroup.subtree_control")"
systemctl status tankd-pods.scope --no-pager | sed 's/^/    /' | head -8

same_pod() {  # the container survived the daemon's restart, nothing counted
    active || return 1
    wait_for web '"running"' || return 1
    [ "$(pid_of web)" = "$pid" ] && [ "$(restarts_of web)" = 0 ] && [ -d "/proc/$pid" ]
}
check "systemctl restart tankd: adopted (same pid, no restart)" \
    sh -c "systemctl restart tankd && $(declare -f active wait_for pid_of restarts_of same_pod); pid=$pid; same_pod"
main=$(systemctl show -p MainPID --value tankd)
kill -9 "$main"
check "kill -9 of tankd: systemd restarts it, the container is adopted" \
    sh -c "sleep 1; $(declare -f active wait_for pid_of restarts_of same_pod); pid=$pid; same_pod"
check "a new tankd process" test "$(systemctl show -p MainPID --value tankd)" != "$main"
systemctl stop tankd
check "systemctl stop tankd leaves the container running" test -d "/proc/$pid"
check "systemctl start tankd adopts it again" \
    sh -c "systemctl start tankd && $(declare -f active wait_for pid_of restarts_of same_pod); pid=$pid; same_pod"
check "the container's output still reaches its log" sh -c "tankctl logs web | tail -1 | grep -q tick"
check "WatchdogSec is set" sh -c "systemctl show -p WatchdogUSec --value tankd | grep -q 30s"
before=$(systemctl show -p WatchdogTimestampMonotonic --value tankd)
sleep 17
after=$(systemctl show -p WatchdogTimestampMonotonic --value tankd)
check "WATCHDOG=1 from the loop (timestamp $before -> $after)" test "$after" != "$before"
# Polled, not a fixed sleep: under emulation on a busy host the restart can
# take longer than 2 s (seen once).
check "an adopted container killed from outside is restarted" \
    sh -c "$(declare -f restarts_of); kill -9 $pid; for _ in \$(seq 150); do [ \"\$(restarts_of web)\" = 1 ] && exit 0; sleep 0.2; done; exit 1"
check "delete tears it down" tankctl delete --wait web
check "its cgroup is gone" test ! -d "$scope/pods/web"
systemctl stop tankd
finish
