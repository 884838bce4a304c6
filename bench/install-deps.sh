#!/bin/sh
# Installs the Debian packages the benchmarks need, without leaving their
# services running on this machine: while apt-get installs, a policy-rc.d
# forbids starting services (unless one is already in place), and services
# of packages this script newly installed are disabled on systemd hosts.
#
#   sudo bench/install-deps.sh
set -eu
pkgs="apt-cacher-ng approx socat nginx-light gnuplot-nox dpkg-dev gpg"
[ "$(id -u)" = 0 ] || { echo "install-deps: run as root" >&2; exit 1; }

new=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || new="$new $p"
done
if [ -z "$new" ]; then
	echo "install-deps: everything is installed"
	exit 0
fi

guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	guard=/usr/sbin/policy-rc.d
	printf '#!/bin/sh\n# temporary, from pkgswarm bench/install-deps.sh\nexit 101\n' > "$guard"
	chmod 755 "$guard"
	trap 'rm -f "$guard"' EXIT INT TERM
fi
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $new

if [ -d /run/systemd/system ]; then
	for unit in apt-cacher-ng.service approx.socket nginx.service; do
		case "$unit" in
		apt-cacher-ng*) p=apt-cacher-ng ;;
		approx*) p=approx ;;
		nginx*) p=nginx-light ;;
		esac
		case " $new " in
		*" $p "*) systemctl disable --now "$unit" 2>/dev/null || true ;;
		esac
	done
fi
echo "install-deps: installed$new"
