package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/office"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// TestLabSitesShareADownloadInFlight is issue 14's many-sites case in small:
// three sites of two nodes, each site behind a gateway of its own (mDNS
// stays in the site), the DHT bootstrapped from each site's first node, every
// node listening on every address (the default --swarm-listen). All six ask
// for a 24 MB package at once, which no node holds: one node of one site
// fetches it from the origin (shaped, so the download lasts seconds) and the
// other sites read that download while it is in flight (the swarm tier's
// peer protocol, found on the DHT under the flight key). Before, each site
// fetched it from the origin: three copies.
func TestLabSitesShareADownloadInFlight(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the fleet lab needs root (network namespaces)")
	}
	pkgs := []testrepo.Package{{Name: "flying", Version: "1.0", Size: 24 << 20, Seed: 51}}
	var fl *office.Fleet
	fl = office.NewFleet(t, office.FleetOptions{
		Options: office.Options{
			Name: "fly", Packages: pkgs, NoStart: true, MDNS: true, LogLevel: "debug",
			OriginRate: "100mbit",
			NodeArgs: func(n *office.Node) []string {
				var boot []string
				for _, site := range fl.Site {
					if site[0] != n {
						boot = append(boot, net.JoinHostPort(site[0].IP().String(), "6881"))
					}
				}
				return []string{"--swarm-bootstrap", strings.Join(boot, ",")}
			},
		},
		Sites: 3, PerSite: 2,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	startNodes(ctx, t, fl.Nodes())
	for _, site := range fl.Site {
		waitFor(t, site[0].Name+"'s site's nodes list each other", time.Minute, func() (bool, string) {
			for _, n := range site {
				if st := nodeStatus(t, n); len(st.Peers) < len(site)-1 {
					return false, n.Name + " lists " + strings.Join(st.PeerIDs(), ",")
				}
			}
			return true, ""
		})
	}

	deb := fl.Repo.Debs["flying"]
	began := time.Now()
	var wg sync.WaitGroup
	for _, n := range fl.Nodes() {
		wg.Go(func() { aptFetch(ctx, t, fl.Office, n, "flying") })
	}
	wg.Wait()
	t.Logf("six nodes of three sites fetched %s (%d bytes) in %v", deb.FileName(), deb.Size, time.Since(began).Round(time.Millisecond))
	for _, n := range fl.Nodes() {
		if sum := fileSHA256(t, blobPath(n, deb.SHA256)); sum != deb.SHA256 {
			t.Errorf("%s cached %s with SHA-256 %s; want %s", n.Name, deb.Path, sum, deb.SHA256)
		}
	}
	if got := fl.Origin.Requests(deb.Path); got != 1 {
		t.Errorf("origin served %s %d times; want 1 for the three sites (%v)", deb.Path, got, debLog(fl.Office))
	}
	fromSwarm := 0
	for i, site := range fl.Site {
		var in []string
		for _, n := range site {
			st := nodeStatus(t, n)
			in = append(in, fmt.Sprintf("%s served %v", n.Name, st.Served))
			if st.Served["swarm"] >= deb.Size {
				fromSwarm++
			}
		}
		t.Logf("site %d: %s", i, strings.Join(in, "; "))
	}
	if fromSwarm < 2 {
		t.Errorf("%d nodes got the file from other sites (served from the swarm tier); want one in each of the two sites that did not fetch it", fromSwarm)
	}
}
