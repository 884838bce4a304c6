#!/usr/bin/env bash
# install-test.sh: install the pkgswarm .deb on this Debian machine, use it,
# and remove every trace of it again. Run by hand, as root, on a disposable
# or test machine (never in CI):
#
#   go run ./cmd/build -out dist           # in packaging/
#   sudo ./install-test.sh dist/pkgswarm_*_amd64.deb
#
# Steps: install the .deb; systemctl enable --now pkgswarm; wait for it to
# answer; `pkgswarm setup apt`; `apt-get update` through it (the machine's
# http:// sources go through the proxy; https:// ones stay direct) and check
# the node's status shows that traffic; then `apt-get purge pkgswarm` and
# check the machine is as it was: no package, no unit, no apt proxy snippet,
# no cache or state directory, /etc/apt and /etc/systemd unchanged, the
# same installed packages. A failure at any step still purges (trap).
#
# It refuses to run when pkgswarm is already installed or port 3142 is
# taken, so it never touches an existing installation.
set -euo pipefail

deb=${1:-}
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
	echo "usage: $0 path/to/pkgswarm_VERSION_ARCH.deb" >&2
	exit 2
fi
deb=$(realpath "$deb")
[ "$(id -u)" = 0 ] || { echo "$0: run as root (it installs a package)" >&2; exit 2; }
[ -d /run/systemd/system ] || { echo "$0: needs a machine booted with systemd" >&2; exit 2; }
if dpkg-query -W -f='${Status}' pkgswarm 2>/dev/null | grep -q "installed"; then
	echo "$0: pkgswarm is already installed here; this test would remove it. Stopping." >&2
	exit 2
fi
if ss -Hltn 'sport = :3142' | grep -q .; then
	echo "$0: port 3142 is in use (another apt proxy?); stopping." >&2
	exit 2
fi

say() { printf '\n== %s\n' "$*"; }
work=$(mktemp -d)
snapshot() {
	# Files under /etc/apt and /etc/systemd with their digests, the package
	# selections, and the pkgswarm directories that exist.
	{
		find /etc/apt /etc/systemd /etc/pkgswarm -xdev \( -type f -o -type l \) -print0 2>/dev/null |
			sort -z | xargs -0r sha256sum 2>/dev/null || true
		dpkg --get-selections
		ls -d /var/cache/pkgswarm /var/lib/pkgswarm /var/cache/private/pkgswarm /var/lib/private/pkgswarm 2>/dev/null || true
	} >"$1"
}
had_private_cache=$([ -d /var/cache/private ] && echo 1 || true)
had_private_lib=$([ -d /var/lib/private ] && echo 1 || true)
snapshot "$work/before"

cleanup() {
	status=$?
	say "purging pkgswarm"
	DEBIAN_FRONTEND=noninteractive apt-get purge -y pkgswarm >/dev/null 2>&1 || dpkg --purge pkgswarm || true
	# systemd creates these parents for DynamicUser services; drop them if
	# this test made them and they are empty.
	[ -n "$had_private_cache" ] || rmdir /var/cache/private 2>/dev/null || true
	[ -n "$had_private_lib" ] || rmdir /var/lib/private 2>/dev/null || true
	systemctl daemon-reload
	snapshot "$work/after"
	if ! diff -u "$work/before" "$work/after"; then
		echo "FAIL: the machine is not as it was (diff above)" >&2
		status=1
	elif [ -e /etc/apt/apt.conf.d/01pkgswarm-proxy ] || systemctl cat pkgswarm.service >/dev/null 2>&1; then
		echo "FAIL: a pkgswarm file or unit is left" >&2
		status=1
	elif [ "$status" = 0 ]; then
		say "PASS: installed, served apt, and removed without a trace"
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT

say "installing $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$deb"
test -x /usr/bin/pkgswarm
test -f /etc/pkgswarm/pkgswarm.toml
systemctl cat pkgswarm.service >/dev/null

say "enabling the unit"
systemctl enable --now pkgswarm.service
for _ in $(seq 1 50); do
	pkgswarm status >/dev/null 2>&1 && break
	sleep 0.2
done
pkgswarm status
systemctl is-active --quiet pkgswarm.service

say "pkgswarm setup apt"
pkgswarm setup apt
grep -q 'Acquire::http::Proxy "http://127.0.0.1:3142"' /etc/apt/apt.conf.d/01pkgswarm-proxy
apt-config dump | grep -i 'Acquire::http::Proxy'

say "apt-get update through pkgswarm"
apt-get update
pkgswarm status
requests=$(pkgswarm status --json | sed -n 's/^ *"requests": \([0-9]*\),*$/\1/p' | head -1)
if grep -Rqs '^[^#]*http://' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	if [ "${requests:-0}" -eq 0 ]; then
		echo "FAIL: apt-get update sent nothing to the origins through pkgswarm" >&2
		journalctl -u pkgswarm.service --no-pager -n 50 >&2 || true
		exit 1
	fi
	echo "pkgswarm made $requests origin requests for apt"
else
	echo "note: this machine has no http:// apt source, so apt-get update did not go through pkgswarm"
fi
if journalctl -u pkgswarm.service --no-pager -o cat | grep -q '"level":"ERROR"'; then
	echo "pkgswarm logged errors:" >&2
	journalctl -u pkgswarm.service --no-pager -o cat | grep '"level":"ERROR"' >&2
	exit 1
fi
# cleanup (trap) purges and checks that nothing is left.
