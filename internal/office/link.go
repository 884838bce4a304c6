package office

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
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
