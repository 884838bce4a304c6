#!/bin/sh
# pkgswarm pre-removal (deb: "remove", "upgrade"...; rpm: $1 = instances
# left after, 0 on erase).
set -e
case "$1" in
remove | 0)
	# A package manager left pointing at a proxy that is gone fails every
	# download: undo what `pkgswarm setup` wrote on this machine.
	if command -v pkgswarm >/dev/null 2>&1; then
		pkgswarm setup --undo || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl disable --now pkgswarm.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
