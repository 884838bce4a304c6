#!/bin/sh
# pkgswarm post-installation (deb: "configure"; rpm: $1 = instances after).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# An upgrade restarts a running service; a first install starts nothing:
	# enable it with `systemctl enable --now pkgswarm`.
	if systemctl is-active --quiet pkgswarm.service; then
		systemctl try-restart pkgswarm.service || true
	fi
fi
case "$1" in
configure | 1)
	if [ -z "$2" ]; then
		echo "pkgswarm installed. Start it with: systemctl enable --now pkgswarm"
		echo "Then point this machine's package manager at it: pkgswarm setup apt (or urpmi, dnf)"
	fi
	;;
esac
exit 0
