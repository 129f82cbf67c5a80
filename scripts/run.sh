#!/bin/bash
# Installs what Tank needs, builds it, starts tankd and applies an example
# pod. tankd goes on the system bus when one runs (its bus policy is
# installed for it), else on a private system-like bus started here.
# Stop everything again with: scripts/run.sh stop
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$TANK_ROOT"

RUN=/run/tank-dev
mkdir -p "$RUN"; chmod 0755 "$RUN"

stop() {
    for f in "$RUN/tankd.pid" "$RUN/dbus.pid"; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    # Containers outlive tankd by design (a restarted tankd takes them
    # over); this demo's stop ends them too.
    for procs in /sys/fs/cgroup/*/tank/pods/*/*/cgroup.procs /sys/fs/cgroup/tank/pods/*/*/cgroup.procs; do
        [ -f "$procs" ] && xargs -r kill -9 < "$procs" 2>/dev/null || true
    done
}
if [ "${1:-}" = stop ]; then stop; echo "stopped"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "run.sh: run me as root" >&2; exit 1; }

./scripts/deps.sh
cargo build --release --locked --bins
stop

if [ -S /run/dbus/system_bus_socket ]; then
    install -m 0644 dbus/org.tank.Manager.conf /etc/dbus-1/system.d/org.tank.Manager.conf
    busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig
    export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket
else
    sed -e "s|@SOCKET@|$RUN/system_bus_socket|" -e "s|@POLICY@|$TANK_ROOT/dbus/org.tank.Manager.conf|" \
        crates/tankd/tests/support/system-bus.conf.in > "$RUN/system-bus.conf"
    dbus-daemon --config-file="$RUN/system-bus.conf" --fork --nopidfile --print-pid=3 3>"$RUN/dbus.pid"
    export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$RUN/system_bus_socket
fi

export TANK_DATA_DIR=${TANK_DATA_DIR:-/var/lib/tank}
"$TANK_BIN/tankd" >"$RUN/tankd.log" 2>&1 &
echo $! > "$RUN/tankd.pid"
for _ in $(seq 100); do
    busctl --system status org.tank.Manager >/dev/null 2>&1 && break
    kill -0 "$(cat "$RUN/tankd.pid")" 2>/dev/null || { cat "$RUN/tankd.log"; exit 1; }
    sleep 0.1
done

# The example's root filesystem: busybox-static and its applets.
ROOTFS=/var/lib/tank-example/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/root"
install -m 0755 /bin/busybox "$ROOTFS/bin/busybox"
for applet in $("$ROOTFS/bin/busybox" --list); do
    [ -e "$ROOTFS/bin/$applet" ] || ln -s busybox "$ROOTFS/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\n' > "$ROOTFS/etc/group"

"$TANK_BIN/tankctl" apply -f examples/hello.yaml
sleep 1
"$TANK_BIN/tankctl" logs hello || true
"$TANK_BIN/tankctl" ps
cat <<EOT

tankd is running (pid $(cat "$RUN/tankd.pid"), log $RUN/tankd.log, data $TANK_DATA_DIR).
Use it with:
  export DBUS_SYSTEM_BUS_ADDRESS=$DBUS_SYSTEM_BUS_ADDRESS
  $TANK_BIN/tankctl ps
Stop it with: scripts/run.sh stop
EOT
