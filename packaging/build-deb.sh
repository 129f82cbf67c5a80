#!/bin/bash
# Builds Tank's Debian package and prints its path (the last line of stdout).
#
# cargo-deb (pinned, installed with `cargo install --locked` when missing)
# packs the optimized binaries of the `release` profile (the ones
# scripts/run.sh builds too). The man pages and shell completions are
# generated from the clap definitions by the fresh tankctl into
# <target>/release/tank-doc/, where the
# assets of [package.metadata.deb] in Cargo.toml point. Idempotent; root
# is not needed. Progress goes to stderr.
set -euo pipefail
. "$(dirname "$0")/../scripts/env.sh"
cd "$TANK_ROOT"

CARGO_DEB_VERSION=3.6.2

if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
    echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked >&2
fi
for tool in dpkg-deb gzip python3; do
    command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

# Where cargo really builds (CARGO_TARGET_DIR, else .cargo/config.toml).
target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin_dir=$target_dir/release

# Not with SOURCE_DATE_EPOCH in the environment: the cc crate tracks it, so
# a change would redo the C parts of the dependencies.
env -u SOURCE_DATE_EPOCH cargo build --release --locked --bins >&2

# Reproducible dates in the man pages and the archive: the last commit's.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

doc=$bin_dir/tank-doc
rm -rf "$doc"
mkdir -p "$doc/man1" "$doc/man8" "$doc/completions"
"$bin_dir/tankctl" generate-manpages "$doc/man" >/dev/null
mv "$doc"/man/*.1 "$doc/man1/"
mv "$doc"/man/*.8 "$doc/man8/"
rmdir "$doc/man"
gzip -9n "$doc"/man1/*.1 "$doc"/man8/*.8
"$bin_dir/tankctl" completions bash > "$doc/completions/tankctl.bash"
"$bin_dir/tankctl" completions zsh > "$doc/completions/_tankctl"
"$bin_dir/tankctl" completions fish > "$doc/completions/tankctl.fish"

out=$target_dir/debian
mkdir -p "$out"
# --no-build: the binaries above are the package's.
deb=$(cargo deb -p tankd --locked --no-build --output "$out" | tail -n 1)
[ -f "$deb" ] || { echo "build-deb: cargo deb did not report a package ($deb)" >&2; exit 1; }
echo "$deb"
