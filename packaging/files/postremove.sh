#!/bin/sh
# pkgswarm post-removal (deb: "remove", "purge"...; rpm: $1 = instances
# left after, 0 on erase).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
case "$1" in
purge)
	# The cache and state, including systemd's DynamicUser copies.
	rm -rf /var/cache/pkgswarm /var/cache/private/pkgswarm /var/lib/pkgswarm /var/lib/private/pkgswarm
	rmdir /etc/pkgswarm 2>/dev/null || true
	;;
esac
exit 0
