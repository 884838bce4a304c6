package office

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/pkgswarm/pkgswarm/internal/netlab"
)

// LinkCounters are the byte counters of one interface, as the kernel keeps
// them: Rx is what the host received on it, Tx what it sent.
type LinkCounters struct {
	Rx, Tx uint64
}

// Counters returns the counters of host's interface on lan (e.g. to measure
// what a node uploaded: Tx, whatever program it runs).
func Counters(ctx context.Context, host *netlab.Host, lan *netlab.LAN) (LinkCounters, error) {
	dev := host.Iface(lan)
	if dev == "" {
		return LinkCounters{}, fmt.Errorf("office: host %s is not on LAN %s", host.Name(), lan.Name())
	}
	out, err := exec.CommandContext(ctx, "ip", "-n", host.Namespace(), "-j", "-s", "link", "show", "dev", dev).Output()
	if err != nil {
		return LinkCounters{}, fmt.Errorf("office: counters of %s in %s: %w", dev, host.Name(), err)
	}
	c, err := parseLinkStats(out, dev)
	if err != nil {
		return LinkCounters{}, fmt.Errorf("office: counters of %s in %s: %w", dev, host.Name(), err)
	}
	return c, nil
}

// Counters returns the counters of the node's LAN interface.
func (n *Node) Counters(ctx context.Context) (LinkCounters, error) {
	return Counters(ctx, n.Host, n.lan)
}

// parseLinkStats reads `ip -j -s link show dev DEV` output: a JSON array
// with one object per link, whose stats64 holds rx and tx byte counts.
func parseLinkStats(out []byte, dev string) (LinkCounters, error) {
	var links []struct {
		Ifname  string `json:"ifname"`
		Stats64 *struct {
			Rx struct {
				Bytes uint64 `json:"bytes"`
			} `json:"rx"`
			Tx struct {
				Bytes uint64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return LinkCounters{}, fmt.Errorf("ip -j output is not a JSON array of links: %w (%s)", err, clip(string(out)))
	}
	var names []string
	for _, l := range links {
		if l.Ifname != dev {
			names = append(names, l.Ifname)
			continue
		}
		if l.Stats64 == nil {
			return LinkCounters{}, fmt.Errorf("ip -j output for %s has no stats64 (is iproute2 too old for -s with -j?)", dev)
		}
		return LinkCounters{Rx: l.Stats64.Rx.Bytes, Tx: l.Stats64.Tx.Bytes}, nil
	}
	return LinkCounters{}, fmt.Errorf("ip -j output lists no link %s (only %s)", dev, strings.Join(names, ", "))
}

// TCPCounters are a host's TCP segment counters, as its network namespace
// keeps them: every segment sent, and those sent again (losses, probes).
type TCPCounters struct {
	OutSegs, RetransSegs uint64
}

// TCP returns host's TCP counters (/proc/net/snmp read in its namespace).
func TCP(ctx context.Context, host *netlab.Host) (TCPCounters, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", host.Namespace(), "cat", "/proc/net/snmp").Output()
	if err != nil {
		return TCPCounters{}, fmt.Errorf("office: TCP counters of %s: %w", host.Name(), err)
	}
	c, err := parseSNMPTCP(out)
	if err != nil {
		return TCPCounters{}, fmt.Errorf("office: TCP counters of %s: %w", host.Name(), err)
	}
	return c, nil
}

// parseSNMPTCP reads the two "Tcp:" lines of /proc/net/snmp: the field
// names, then their values.
func parseSNMPTCP(b []byte) (TCPCounters, error) {
	var names, values []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f[1:]
		} else {
			values = f[1:]
			break
		}
	}
	if values == nil || len(values) != len(names) {
		return TCPCounters{}, fmt.Errorf("no pair of Tcp: lines with as many values as names in /proc/net/snmp (%s)", clip(string(b)))
	}
	var c TCPCounters
	found := 0
	for i, name := range names {
		var dst *uint64
		switch name {
		case "OutSegs":
			dst = &c.OutSegs
		case "RetransSegs":
			dst = &c.RetransSegs
		default:
			continue
		}
		v, err := strconv.ParseUint(values[i], 10, 64)
		if err != nil {
			return TCPCounters{}, fmt.Errorf("Tcp: %s is %q, not a count", name, values[i])
		}
		*dst = v
		found++
	}
	if found != 2 {
		return TCPCounters{}, errors.New("Tcp: lines without OutSegs and RetransSegs")
	}
	return c, nil
}
