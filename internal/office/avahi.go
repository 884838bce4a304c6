package office

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/netlab"
)

// AvahiTools are the programs StartAvahi and Avahi.Browse need, with the
// Debian packages that hold them.
var AvahiTools = map[string]string{
	"avahi-daemon": "avahi-daemon", "avahi-browse": "avahi-utils", "dbus-daemon": "dbus", "unshare": "util-linux",
}

// Avahi is an avahi-daemon (with a private dbus-daemon for its clients)
// running in a lab host, as on a desktop of the office.
type Avahi struct {
	Host *netlab.Host
	// Bus is the D-Bus address its clients use (DBUS_SYSTEM_BUS_ADDRESS).
	Bus  string
	Proc *netlab.Proc
}

// StartAvahi runs dbus-daemon and avahi-daemon in host, in a mount namespace
// of their own (avahi's pid file and socket paths are fixed, under /run, so
// a tmpfs is mounted there, unseen by the test), on the host's first LAN
// interface only, IPv4 only, publishing nothing. It waits until the daemon
// is up. The test fails when a tool in AvahiTools is missing. The host's own
// avahi-daemon, if any, is not touched; nothing runs outside the lab.
func StartAvahi(tb testing.TB, host *netlab.Host) *Avahi {
	tb.Helper()
	for bin, pkg := range AvahiTools {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("office: %s is not installed (apt-get install --no-install-recommends %s)", bin, pkg)
		}
	}
	dir := tb.TempDir()
	busPath := filepath.Join(dir, "bus")
	iface := "eth0" // netlab: a host's first LAN interface
	files := map[string]string{
		"dbus.conf": `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=` + busPath + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`,
		// Every namespace shares the machine's host name: give each
		// daemon its own (LAB-NOTES).
		"avahi.conf": `[server]
host-name=lab` + sanitizeName(host.Name()) + `
use-ipv4=yes
use-ipv6=no
allow-interfaces=` + iface + `
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
disable-publishing=yes
publish-aaaa-on-ipv4=no
[reflector]
enable-reflector=no
`,
		"run.sh": `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/avahi-daemon /run/dbus
dbus-daemon --config-file=` + filepath.Join(dir, "dbus.conf") + ` --nofork --nopidfile &
while [ ! -S ` + busPath + ` ]; do sleep 0.05; done
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=` + busPath + `
exec avahi-daemon --file=` + filepath.Join(dir, "avahi.conf") + ` --no-drop-root --no-chroot --no-rlimits
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			tb.Fatalf("office: avahi in %s: %v", host.Name(), err)
		}
	}
	p, err := host.Start(context.Background(), "unshare", "-m", "--propagation", "private", "sh", filepath.Join(dir, "run.sh"))
	if err != nil {
		tb.Fatalf("office: avahi in %s: %v", host.Name(), err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.Log(), "Server startup complete") {
		if p.Exited() {
			tb.Fatalf("office: avahi-daemon in %s exited: %v\n%s", host.Name(), p.Wait(), tail(p.Log(), 30))
		}
		if time.Now().After(deadline) {
			tb.Fatalf("office: avahi-daemon in %s did not start in 20s:\n%s", host.Name(), tail(p.Log(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &Avahi{Host: host, Bus: "unix:path=" + busPath, Proc: p}
}

// Browse runs `avahi-browse --terminate --parsable --resolve service` (as
// auto-apt-proxy does) against the daemon and returns its output.
func (a *Avahi) Browse(ctx context.Context, service string) (string, error) {
	cmd := a.Host.Command(ctx, "avahi-browse", "-tpr", service)
	cmd.Env = append(cmd.Env, "DBUS_SYSTEM_BUS_ADDRESS="+a.Bus)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("office: avahi-browse %s in %s: %w: %s", service, a.Host.Name(), err, clip(string(out)))
	}
	return string(out), nil
}

// Resolved is one resolved line of avahi-browse -p output ("=;…").
type Resolved struct {
	Iface, Protocol, Instance, Type, Domain, HostName, Address string
	Port                                                       string
	TXT                                                        string // as avahi prints it: "k=v" "k=v"
}

// ParseBrowse returns the resolved entries in avahi-browse -p output.
// Other lines ("+" additions, "-" removals) and malformed lines are skipped.
func ParseBrowse(out string) []Resolved {
	var rs []Resolved
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.SplitN(strings.TrimRight(line, "\r"), ";", 10)
		if len(f) < 9 || f[0] != "=" {
			continue
		}
		r := Resolved{Iface: f[1], Protocol: f[2], Instance: f[3], Type: f[4], Domain: f[5], HostName: f[6], Address: f[7], Port: f[8]}
		if len(f) == 10 {
			r.TXT = f[9]
		}
		rs = append(rs, r)
	}
	return rs
}
