#!/bin/bash
# Guest side of tests/vm/run.sh: Tank's Debian package on a real Debian 12
# host (systemd 252, system D-Bus, polkitd, no logind session). Installing
# it enables and starts tankd; its man pages and completions are in place;
# the bus activates tankd; polkit with real users: a member of group tank
# (with the example rule) may apply and read logs, another user may not
# but may read the pods; tankd and the containers log to the journal;
# removal stops the service.
# Exit status = number of failed checks.
set -u
. "${VMRUN_SHARED:-/mnt/host}/lib.sh"

check "dpkg -i the package" install_tank
check "package installed" sh -c "dpkg-query -W -f='\${Status}' tank | grep -qx 'install ok installed'"

echo "- service"
check "unit file at /lib/systemd/system (merged /usr)" test -f /lib/systemd/system/tankd.service
check "tankd.service enabled" systemctl is-enabled --quiet tankd
check "tankd.service active (Type=notify: after READY=1)" systemctl is-active --quiet tankd
systemctl show -p ActiveState,SubState,StatusText,MainPID tankd | sed 's/^/    /'
check "it owns org.tank.Manager" sh -c "busctl --system status org.tank.Manager >/dev/null"
check "tankctl ps works as root" tankctl ps
# Reported, not asserted (measurements are never timed/sized assertions):
# the idle daemon's memory on a real systemd host, with its breakdown.
sleep 2
pid=$(systemctl show -p MainPID --value tankd)
echo "    idle tankd: $(grep -E '^(VmRSS|RssAnon|RssFile):' /proc/$pid/status | tr -s ' \t\n' ' ')"
check "/var/lib/tank and /run/tank are 0700 root" \
    sh -c 'test "$(stat -c %a:%U /var/lib/tank /run/tank | sort -u)" = 700:root'

echo "- files"
check "/etc/tank/tankd.toml is a conffile" \
    sh -c "dpkg-query -W -f='\${Conffiles}' tank | grep -q '/etc/tank/tankd.toml '"
check "group tank created" getent group tank
check "man page tankctl(1)" sh -c "zcat /usr/share/man/man1/tankctl.1.gz | grep -q '^.TH tankctl 1 '"
check "man page tankctl-apply(1)" test -s /usr/share/man/man1/tankctl-apply.1.gz
check "man page tankd(8)" sh -c "zcat /usr/share/man/man8/tankd.8.gz | grep -q '^.TH tankd 8 '"
if command -v man >/dev/null; then
    check "man -w tankctl" man -w tankctl
fi
check "bash completion loads" bash -c '. /usr/share/bash-completion/completions/tankctl && complete -p tankctl | grep -q _tankctl'
check "zsh completion" test -s /usr/share/zsh/vendor-completions/_tankctl
check "fish completion" test -s /usr/share/fish/vendor_completions.d/tankctl.fish
check "polkit actions" test -s /usr/share/polkit-1/actions/org.tank.policy
check "example rule" test -s /usr/share/doc/tank/examples/50-tank.rules.example

echo "- bus activation"
check "systemctl stop tankd" systemctl stop tankd
check "tankd is stopped" sh -c '! systemctl is-active --quiet tankd'
check "busctl call ListPods (activates tankd)" \
    busctl --system call org.tank.Manager /org/tank/Manager org.tank.Manager ListPods
check "tankd active again (SystemdService=tankd.service)" systemctl is-active --quiet tankd

echo "- polkit, real users"
R=/var/lib/tank-vm/rootfs
busybox_rootfs "$R"
useradd --create-home --groups tank alice
useradd --create-home mallory
install -m 0644 /usr/share/doc/tank/examples/50-tank.rules.example /etc/polkit-1/rules.d/50-tank.rules
cat > /tmp/web.json <<EOT
{"name": "web", "containers": [{"name": "app", "image": {"rootfs": "$R"},
  "env": {"TOKEN": "s3cret-value"},
  "command": ["/bin/sh", "-c", "echo hello-from-web; exec sleep 1000"]}]}
EOT
sed 's/"web"/"evil"/' /tmp/web.json > /tmp/evil.json
chmod 0644 /tmp/web.json /tmp/evil.json

# No logind session, no agent: polkit's default for mallory (allow_any =
# auth_admin) is a challenge, which a non-interactive call gets as
# InteractiveAuthorizationRequired.
out=$(runuser -u mallory -- tankctl --no-ask-password apply -f /tmp/evil.json 2>&1); rc=$?
echo "    mallory: rc=$rc: $out"
check "mallory: apply refused" test "$rc" -ne 0
check "mallory: interactive authentication required" \
    grep -q '^tankctl: interactive authentication required' <<<"$out"
# With interactive authorization allowed but no agent to ask: polkit says
# no, tankd answers org.freedesktop.DBus.Error.AccessDenied.
out=$(runuser -u mallory -- busctl --system --allow-interactive-authorization=yes call \
    org.tank.Manager /org/tank/Manager org.tank.Manager Apply s "$(cat /tmp/evil.json)" 2>&1); rc=$?
echo "    mallory (busctl, interactive allowed): rc=$rc: $out"
check "mallory: busctl Apply refused" test "$rc" -ne 0
check "mallory: AccessDenied (no agent to ask)" grep -qx 'Call failed: Access denied' <<<"$out"
check "mallory: no pod evil" sh -c '! tankctl get evil >/dev/null 2>&1'

# The rule takes effect once polkitd has read it (inotify, ~1.5 s).
alice_apply() {
    for _ in $(seq 20); do
        runuser -u alice -- tankctl --no-ask-password apply -f /tmp/web.json && return 0
        sleep 0.5
    done
    return 1
}
check "alice (group tank): apply" alice_apply
check "alice's pod runs" wait_for web '"running"'
check "mallory: tankctl ps lists it" sh -c 'runuser -u mallory -- tankctl ps | grep -q "^web "'
check "mallory: get shows the pod without env values" \
    bash -c 'out=$(runuser -u mallory -- tankctl get web -o json) && ! grep -q s3cret-value <<<"$out" && grep -q TOKEN <<<"$out"'
check "alice: get shows the env value" \
    sh -c 'runuser -u alice -- tankctl get web -o json | grep -q s3cret-value'
check "mallory: delete refused" sh -c '! runuser -u mallory -- tankctl --no-ask-password delete web'
check "mallory cannot list tankd's state or logs" \
    sh -c '! runuser -u mallory -- ls /var/lib/tank && ! runuser -u mallory -- ls /run/tank && ! runuser -u mallory -- cat /var/lib/tank/logs/web/app.log'
# Reading output is its own action (org.tank.pods.logs), which the example
# rule grants too.
alice_logs() {
    for _ in $(seq 50); do
        runuser -u alice -- tankctl --no-ask-password logs web | grep -qx hello-from-web && return 0
        sleep 0.2
    done
    return 1
}
check "alice: logs" alice_logs
check "mallory: logs refused (org.tank.pods.logs)" \
    bash -c 'out=$(runuser -u mallory -- tankctl --no-ask-password logs web 2>&1); [ $? -ne 0 ] && grep -q org.tank.pods.logs <<<"$out"'

echo "- journal"
journal_has() {  # journal_has GREP JOURNALCTL-ARGS...
    local pattern=$1; shift
    for _ in $(seq 50); do
        journalctl --no-pager "$@" | grep -q "$pattern" && return 0
        sleep 0.2
    done
    journalctl --no-pager "$@" | tail -5; return 1
}
check "journalctl -u tankd has tankd's log" journal_has 'serving org.tank.Manager' -u tankd
check "journalctl TANK_POD=web has the container's output" \
    journal_has '^hello-from-web$' -o cat TANK_POD=web
check "... with TANK_CONTAINER=app" journal_has '^hello-from-web$' -o cat TANK_POD=web TANK_CONTAINER=app
check "alice: delete" runuser -u alice -- tankctl --no-ask-password delete --wait web

echo "- removal"
check "dpkg --purge tank" env DEBIAN_FRONTEND=noninteractive dpkg --purge tank
check "tankd stopped" sh -c '! systemctl is-active --quiet tankd'
check "unit gone" sh -c '! systemctl cat tankd >/dev/null 2>&1'
check "binaries gone" test ! -e /usr/bin/tankd
finish
