#!/bin/bash
# Installs what building and testing Tank needs on Debian 12, as root.
# Idempotent and quick when everything is there: apt runs only for missing
# packages.
set -euo pipefail

packages=(
    # RocksDB is Debian's (linked dynamically: no C++ build), its bindings
    # are made by bindgen (libclang); g++ brings the libstdc++ it links
    librocksdb-dev clang libclang-dev pkg-config g++
    # a private system bus and its tools for the tests (busctl is in systemd)
    dbus-daemon dbus systemd
    # setpriv (test clients as other users), nsenter, unshare, mount
    util-linux mount
    # authorization: polkitd (with pkttyagent, tankctl's optional agent),
    # test users (useradd), gdbus (shows D-Bus error names), script (a pty)
    polkitd passwd libglib2.0-bin bsdutils
    # test topologies (veth uplinks, scratch namespaces)
    iproute2
    # the cgroup tests allocate memory with it
    python3
    # small static C test programs (crates/tankd/tests/support/cprog.rs)
    gcc libc6-dev
    # test images are built from busybox-static and served by a real registry
    busybox-static docker-registry
    # the seccomp filter: libseccomp (the libseccomp crate links it);
    # tests/seccomp.rs builds its probe with gcc -static and a Debian 12
    # rootfs with mmdebstrap (gpg: its signed-by check)
    libseccomp-dev gcc libc6-dev mmdebstrap gpg
    # packaging/build-deb.sh: cargo-deb resolves the shared-library
    # dependencies with dpkg-shlibdeps; the package test reads it with dpkg-deb
    dpkg-dev dpkg
    # crates/tankctl/tests/cli.rs reads the tankctl binary with readelf and
    # nm (what it links: no RocksDB, no libstdc++)
    binutils
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] || { echo "deps: no Rust toolchain (cargo) found" >&2; exit 1; }
fi
