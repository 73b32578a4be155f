#!/bin/sh
# Builds the Debian package (target/debian/shardmq_VERSION-1_ARCH.deb) from the recipe in
# Cargo.toml ([package.metadata.deb]) and packaging/, then checks it without installing it:
# prints its control data and file list, extracts it into a temporary root and runs the packaged
# binary's --test-config on the packaged example configuration.
#
#   packaging/build-deb.sh            # cargo-deb installed on first use (crates.io)
#   packaging/build-deb.sh --no-build # package the release binaries already built
#   packaging/build-deb.sh --check    # only check the newest package built
#
# Needs dpkg-deb (Debian, Ubuntu). Not part of CI's required path: a release build takes minutes.
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--check" ]; then
    if ! command -v cargo-deb >/dev/null 2>&1; then
        cargo install cargo-deb --locked
    fi
    cargo deb "$@"
fi
deb=$(ls -t target/debian/shardmq_*.deb | head -n 1)
echo "== $deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb --extract "$deb" "$root"
dpkg-deb --control "$deb" "$root/DEBIAN"
# What must be there: the binaries, the unit, the example configuration as a conffile, the
# maintainer script that creates the unit's user.
for path in usr/bin/shardmq usr/bin/shardmq-pub usr/bin/shardmq-sub usr/bin/shardmq-passwd \
    usr/lib/systemd/system/shardmq.service etc/shardmq/shardmq.toml etc/logrotate.d/shardmq \
    DEBIAN/postinst DEBIAN/conffiles; do
    if [ ! -e "$root/$path" ]; then
        echo "missing from the package: $path" >&2
        exit 1
    fi
done
grep -qx /etc/shardmq/shardmq.toml "$root/DEBIAN/conffiles" || {
    echo "/etc/shardmq/shardmq.toml is not a conffile" >&2
    exit 1
}
grep -q '^User=shardmq' "$root/usr/lib/systemd/system/shardmq.service"
grep -q 'adduser --system' "$root/DEBIAN/postinst"
"$root/usr/bin/shardmq" --version
"$root/usr/bin/shardmq" --test-config -c "$root/etc/shardmq/shardmq.toml"
echo "== $deb checked"
