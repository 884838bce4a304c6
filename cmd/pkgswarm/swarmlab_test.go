package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/office"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/swarm"
)

// swarmPackages are the files of TestLabSwarm: one for the trip between the
// sites (and aria2c), the 60 MB one six nodes fetch at once, and two that a
// bad peer serves.
var swarmPackages = []testrepo.Package{
	{Name: "across", Version: "1.0", Size: 3 << 20, Seed: 31},
	{Name: "huge", Version: "1.0", Size: 60 << 20, Seed: 32},
	{Name: "spoiled", Version: "1.0", Size: 4 << 20, Seed: 33},
	{Name: "tainted", Version: "1.0", Size: 2 << 20, Seed: 34},
}

// TestLabSwarm is issue 5's swarm tier in the namespace lab, through the
// real CLI (`pkgswarm serve`, `pkgswarm magnet`) and real clients (apt-get,
// aria2c).
//
// The lab: two sites, each a LAN (bridge) of its own, joined only through a
// router that also joins the origin's network; the router forwards unicast
// and never multicast. Site A has a0 and a1, site B b0 … b5. Every node runs
// with --mdns=false and no --peer, so no node has a LAN peer and the LAN tier
// never short-circuits the swarm (it is proven in TestLabMDNS): nodes know
// each other only through the private DHT, bootstrapped on every node from
// one address, a0's DHT port (--swarm-bootstrap a0:6881). Nothing is
// bootstrapped from, or sent to, anything outside the lab.
//
// Waits are bounded only to stop a hang; times and byte counts are logged.
func TestLabSwarm(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the swarm lab needs root (network namespaces)")
	}
	aria2c, err := exec.LookPath("aria2c")
	if err != nil {
		t.Fatal("aria2c is required for the BitTorrent interop step: install the Debian package aria2")
	}
	start := time.Now()
	// Every node bootstraps the DHT from a0, whose address is known once
	// the lab is built: the nodes start after that.
	var boot string
	s := office.NewSites(t, office.SitesOptions{
		Options: office.Options{Name: "swarm", Nodes: 2, Packages: swarmPackages, NoStart: true, LogLevel: "debug",
			Program: office.Program{Args: func(n *office.Node) []string {
				// The swarm says "announced" at debug, among its internals.
				return append(n.ServeArgs(), "--swarm-bootstrap", boot, "--log-internals", "debug")
			}}},
		NodesB: 6,
	})
	boot = s.A[0].IP().String() + ":6881"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	startNodes(ctx, t, s.Nodes())
	t.Logf("two sites up in %v: site A %s, site B %s, origin %s, DHT bootstrap %s",
		time.Since(start).Round(time.Millisecond), names(s.A), names(s.B), s.Origin.URL, boot)
	a0, a1 := s.A[0], s.A[1]
	b := s.B
	debs := s.Repo.Debs

	t.Run("site B fetches from site A through the swarm", func(t *testing.T) {
		deb := debs["across"]
		began := time.Now()
		aptFetch(ctx, t, s.Office, a0, "across")
		if got := s.Origin.Requests(deb.Path); got != 1 {
			t.Fatalf("origin served %s %d times to a0; want 1", deb.Path, got)
		}
		t.Logf("a0 (site A) fetched %s (%d bytes) from the origin in %v", deb.FileName(), deb.Size, time.Since(began).Round(time.Millisecond))
		took := waitAnnounced(t, a0, deb.SHA256)
		t.Logf("a0 announced it on the DHT %v later", took.Round(time.Millisecond))

		began = time.Now()
		aptFetch(ctx, t, s.Office, b[0], "across")
		t.Logf("b0 (site B) fetched it in %v", time.Since(began).Round(time.Millisecond))
		if got := s.Origin.Requests(deb.Path); got != 1 {
			t.Errorf("origin served %s %d times in all; want 1 (site B must get it from the swarm): %v", deb.Path, got, debLog(s.Office))
		}
		if sum := fileSHA256(t, blobPath(b[0], deb.SHA256)); sum != deb.SHA256 {
			t.Errorf("b0 cached %s with SHA-256 %s; want %s", deb.Path, sum, deb.SHA256)
		}
		f := lastFetch(t, b[0], deb.SHA256)
		t.Logf("b0's swarm fetch: %s", describeFetch(f))
		if f.Err != "" || f.Peers[a0.IP().String()] == 0 {
			t.Errorf("b0's swarm fetch of %s: err %q, bytes from a0 (%s) %d; want the file from a0 across the router",
				deb.FileName(), f.Err, a0.IP(), f.Peers[a0.IP().String()])
		}
		if st := nodeStatus(t, b[0]); st.Served["swarm"] < deb.Size {
			t.Errorf("b0 counts %d bytes served from the swarm; want ≥ %d (served_bytes %v)", st.Served["swarm"], deb.Size, st.Served)
		}
	})

	t.Run("aria2c by the magnet pkgswarm magnet prints", func(t *testing.T) {
		deb := debs["across"]
		cmd, err := office.CLICommand(ctx, b[0].Host, "magnet", deb.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pkgswarm magnet %s on b0: %v\n%s%s", deb.SHA256, err, out, stderr.String())
		}
		magnet := strings.TrimSpace(string(out))
		t.Logf("pkgswarm magnet on b0: %s", magnet)
		if !strings.HasPrefix(magnet, "magnet:?xt=urn:btih:") {
			t.Fatalf("pkgswarm magnet printed %q; want a magnet link", magnet)
		}
		upBefore := swarmStats(t, a0).BytesUp + swarmStats(t, b[0]).BytesUp

		// A desktop at site B with a plain BitTorrent client: its DHT starts
		// from a0 only, and it has no tracker, no LPD and no PEX.
		desktop := s.Lab().AddHost("desktop", s.LANB)
		dir := t.TempDir()
		began := time.Now()
		actx, acancel := context.WithTimeout(ctx, 2*time.Minute)
		defer acancel()
		cmd = desktop.Command(actx, aria2c,
			"--dir="+dir,
			"--enable-dht=true",
			"--enable-dht6=false",
			"--disable-ipv6=true",
			"--dht-entry-point="+boot,
			"--dht-listen-port=6881",
			"--listen-port=6882",
			"--dht-file-path="+filepath.Join(dir, "dht.dat"),
			"--bt-enable-lpd=false",
			"--enable-peer-exchange=false",
			"--bt-save-metadata=false",
			"--seed-time=0",
			"--bt-stop-timeout=90",
			"--file-allocation=none",
			"--summary-interval=0",
			"--console-log-level=warn",
			"--no-conf=true",
			magnet,
		)
		out, err = cmd.CombinedOutput()
		took := time.Since(began)
		if err != nil {
			t.Fatalf("aria2c in %s: %v\n%s", desktop.Name(), err, out)
		}
		t.Logf("aria2c finished in %v:\n%s", took.Round(time.Millisecond), strings.TrimSpace(string(out)))
		if sum := fileSHA256(t, filepath.Join(dir, deb.SHA256)); sum != deb.SHA256 {
			t.Errorf("aria2c's file hashes to %s; want %s", sum, deb.SHA256)
		}
		upAfter := swarmStats(t, a0).BytesUp + swarmStats(t, b[0]).BytesUp
		t.Logf("a0 and b0 uploaded %d bytes meanwhile (the file is %d)", upAfter-upBefore, deb.Size)
		if upAfter-upBefore < deb.Size {
			t.Errorf("a0 and b0 uploaded %d bytes while aria2c fetched %d; want it from them", upAfter-upBefore, deb.Size)
		}
	})

	t.Run("six nodes fetch 60 MB that one holds", func(t *testing.T) {
		deb := debs["huge"]
		began := time.Now()
		aptFetch(ctx, t, s.Office, a1, "huge")
		t.Logf("a1 fetched %s (%d bytes) from the origin in %v", deb.FileName(), deb.Size, time.Since(began).Round(time.Millisecond))
		took := waitAnnounced(t, a1, deb.SHA256)
		t.Logf("a1 announced it %v later", took.Round(time.Millisecond))
		// The holder's link at 100 Mbit/s: it alone would need ~30 s to
		// send six copies, so the six must trade pieces among themselves.
		if err := a1.Shape("100mbit"); err != nil {
			t.Fatal(err)
		}
		upBefore := swarmStats(t, a1).BytesUp
		var wg sync.WaitGroup
		for _, n := range b {
			wg.Go(func() {
				if _, err := n.Apt().Update(ctx); err != nil {
					t.Errorf("%s: %v", n.Name, err)
				}
			})
		}
		wg.Wait()
		began = time.Now()
		took6 := make([]time.Duration, len(b))
		for i, n := range b {
			wg.Go(func() {
				if _, err := n.Apt().Download(ctx, "huge"); err != nil {
					t.Errorf("%s: %v", n.Name, err)
					return
				}
				took6[i] = time.Since(began)
				checkArchives(t, s.Office, n, "huge")
			})
		}
		wg.Wait()
		t.Logf("six nodes fetched %d bytes each at once in %v", deb.Size, time.Since(began).Round(time.Millisecond))
		if got := s.Origin.Requests(deb.Path); got != 1 {
			t.Errorf("origin served %s %d times; want 1 (a1's): %v", deb.Path, got, debLog(s.Office))
		}
		ipName := map[string]string{}
		for _, n := range s.Nodes() {
			ipName[n.IP().String()] = n.Name
		}
		several := 0
		for i, n := range b {
			f := lastFetch(t, n, deb.SHA256)
			var parts []string
			for _, ip := range slices.Sorted(maps.Keys(f.Peers)) {
				parts = append(parts, fmt.Sprintf("%s=%d", cmpName(ipName, ip), f.Peers[ip]))
			}
			t.Logf("%s done after %v, %d peers: %s", n.Name, took6[i].Round(time.Millisecond), len(f.Peers), strings.Join(parts, " "))
			if f.Err != "" {
				t.Errorf("%s's swarm fetch failed: %s", n.Name, f.Err)
			}
			if len(f.Peers) > 1 {
				several++
			}
			if sum := fileSHA256(t, blobPath(n, deb.SHA256)); sum != deb.SHA256 {
				t.Errorf("%s cached %s with SHA-256 %s; want %s", n.Name, deb.Path, sum, deb.SHA256)
			}
		}
		up := swarmStats(t, a1).BytesUp - upBefore
		t.Logf("a1 (the only holder) uploaded %d bytes, %.2f copies, for 6 copies fetched", up, float64(up)/float64(deb.Size))
		if several <= len(b)/2 {
			t.Errorf("%d of %d nodes got pieces from more than one peer; want most of them", several, len(b))
		}
	})

	t.Run("a peer sending bad pieces is banned", func(t *testing.T) {
		// a1 (across the router) and b3 (on the getter's own LAN) hold the
		// file; b3's copy then rots on disk and a1 leaves. b4 asks b3, whose
		// pieces fail their hash.
		deb := debs["spoiled"]
		bad, getter := b[3], b[4]
		aptFetch(ctx, t, s.Office, a1, "spoiled")
		waitAnnounced(t, a1, deb.SHA256)
		aptFetch(ctx, t, s.Office, bad, "spoiled")
		waitAnnounced(t, bad, deb.SHA256)
		if got := s.Origin.Requests(deb.Path); got != 1 {
			t.Fatalf("origin served %s %d times to a1 and b3; want 1", deb.Path, got)
		}
		corruptEvery(t, blobPath(bad, deb.SHA256), 16<<10)
		// With a1 gone, b3 is the only holder b4 can find: it must take b3's
		// pieces, refuse them, ban b3, and go on to the origin. (With a1 up,
		// whether b4 asks b3 at all depends on timing.)
		if err := a1.Stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := a1.Start(ctx); err != nil {
				t.Errorf("restarting a1: %v", err)
			}
		}()
		began := time.Now()
		aptFetch(ctx, t, s.Office, getter, "spoiled")
		t.Logf("%s fetched %s in %v; origin GETs for it after the rot: %d", getter.Name, deb.FileName(),
			time.Since(began).Round(time.Millisecond), s.Origin.Requests(deb.Path)-1)
		if sum := fileSHA256(t, blobPath(getter, deb.SHA256)); sum != deb.SHA256 {
			t.Errorf("%s cached %s with SHA-256 %s; want %s", getter.Name, deb.Path, sum, deb.SHA256)
		}
		st := swarmStats(t, getter)
		if f, ok := findFetch(st, deb.SHA256); ok {
			t.Logf("%s's swarm fetch: %s", getter.Name, describeFetch(f))
		}
		checkBanned(t, getter, st, bad)
	})

	t.Run("a peer offering poisoned metainfo is banned", func(t *testing.T) {
		// b5 holds the file alone. It is stopped, its blob rots, and its
		// cached torrent info is removed, so at restart it derives the
		// metainfo from the rotten bytes: well-formed, named after the right
		// digest, but describing other data. b2 downloads by it, finds the
		// whole file does not hash to the digest, bans b5, and gets the file
		// from the origin.
		deb := debs["tainted"]
		bad, getter := b[5], b[2]
		aptFetch(ctx, t, s.Office, bad, "tainted")
		if err := bad.Stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		corruptEvery(t, blobPath(bad, deb.SHA256), 16<<10)
		info := filepath.Join(bad.DataDir, "swarm", "info", deb.SHA256[:2], deb.SHA256+".info")
		if err := os.Remove(info); err != nil {
			t.Fatalf("remove b5's cached torrent info (so it rehashes the rotten blob): %v", err)
		}
		if err := bad.Start(ctx); err != nil {
			t.Fatal(err)
		}
		waitAnnounced(t, bad, deb.SHA256)
		before := s.Origin.Requests(deb.Path)
		began := time.Now()
		aptFetch(ctx, t, s.Office, getter, "tainted")
		t.Logf("%s fetched %s in %v; origin GETs for it after the poisoning: %d", getter.Name, deb.FileName(),
			time.Since(began).Round(time.Millisecond), s.Origin.Requests(deb.Path)-before)
		if sum := fileSHA256(t, blobPath(getter, deb.SHA256)); sum != deb.SHA256 {
			t.Errorf("%s cached %s with SHA-256 %s; want %s", getter.Name, deb.Path, sum, deb.SHA256)
		}
		st := swarmStats(t, getter)
		if f, ok := findFetch(st, deb.SHA256); ok {
			t.Logf("%s's swarm fetch: %s", getter.Name, describeFetch(f))
		}
		checkBanned(t, getter, st, bad)
	})
	t.Logf("swarm lab done in %v", time.Since(start).Round(time.Millisecond))
}

// startNodes starts the nodes at once and waits until each answers.
func startNodes(ctx context.Context, t *testing.T, nodes []*office.Node) {
	t.Helper()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			if err := n.Start(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

func names(ns []*office.Node) string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name+"="+n.IP().String())
	}
	return strings.Join(out, " ")
}

func cmpName(ipName map[string]string, ip string) string {
	if n, ok := ipName[ip]; ok {
		return n
	}
	return ip
}

func blobPath(n *office.Node, digest string) string {
	return filepath.Join(n.DataDir, "blobs", "sha256", digest[:2], digest)
}

// waitAnnounced waits until n's log says it announced digest on the DHT and
// reached at least one DHT node (the swarm logs this at debug level).
func waitAnnounced(t *testing.T, n *office.Node, digest string) time.Duration {
	t.Helper()
	return waitFor(t, n.Name+" announces sha256:"+digest[:12]+" on the DHT", 90*time.Second, func() (bool, string) {
		for line := range strings.SplitSeq(n.Log(), "\n") {
			if strings.Contains(line, "msg=announced") && strings.Contains(line, "digest="+digest) &&
				strings.Contains(line, "reached=true") {
				return true, ""
			}
		}
		return false, "no announce that reached a DHT node in its log yet"
	})
}

// swarmStats returns extra.swarm of n's status.
func swarmStats(t *testing.T, n *office.Node) swarm.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := n.Get(ctx, "/_pkgswarm/status")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Extra struct {
			Swarm any `json:"swarm"`
		} `json:"extra"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("%s: decode /_pkgswarm/status: %v", n.Name, err)
	}
	if doc.Extra.Swarm == nil {
		t.Fatalf("%s: /_pkgswarm/status has no extra.swarm (is --swarm off?)", n.Name)
	}
	// The document is snake_case (bytes_up); encoding/json matches field
	// names case-insensitively, so without the underscores it fills
	// swarm.Stats (BytesUp).
	b, _ := json.Marshal(unsnake(doc.Extra.Swarm))
	var st swarm.Stats
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: extra.swarm: %v", n.Name, err)
	}
	return st
}

var snakeKey = regexp.MustCompile(`^[a-z]+(_[a-z]+)+$`)

// unsnake drops the underscores of snake_case keys (not of map keys such
// as addresses).
func unsnake(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if snakeKey.MatchString(k) {
				k = strings.ReplaceAll(k, "_", "")
			}
			out[k] = unsnake(e)
		}
		return out
	case []any:
		for i := range x {
			x[i] = unsnake(x[i])
		}
	}
	return v
}

func findFetch(st swarm.Stats, digest string) (swarm.FetchStats, bool) {
	for _, f := range slices.Backward(st.Fetches) {
		if f.Digest == digest {
			return f, true
		}
	}
	return swarm.FetchStats{}, false
}

// lastFetch returns n's latest swarm fetch of digest, failing the test when
// there is none.
func lastFetch(t *testing.T, n *office.Node, digest string) swarm.FetchStats {
	t.Helper()
	st := swarmStats(t, n)
	f, ok := findFetch(st, digest)
	if !ok {
		t.Fatalf("%s made no swarm fetch of sha256:%s (fetches: %+v)", n.Name, digest, st.Fetches)
	}
	return f
}

func describeFetch(f swarm.FetchStats) string {
	var parts []string
	for _, ip := range slices.Sorted(maps.Keys(f.Peers)) {
		parts = append(parts, ip+"="+strconv.FormatInt(f.Peers[ip], 10))
	}
	d := "open"
	if !f.Finished.IsZero() {
		d = f.Finished.Sub(f.Started).Round(time.Millisecond).String()
	}
	s := fmt.Sprintf("infohash %s, %s, bytes by peer: %s", f.InfoHash, d, strings.Join(parts, " "))
	if f.Err != "" {
		s += ", error: " + f.Err
	}
	return s
}

// checkBanned fails unless st (getter's swarm stats) lists bad's address
// among the bans in force.
func checkBanned(t *testing.T, getter *office.Node, st swarm.Stats, bad *office.Node) {
	t.Helper()
	for _, b := range st.Banned {
		if b.Addr == bad.IP().String() {
			t.Logf("%s banned %s (%s): %s", getter.Name, bad.Name, b.Addr, b.Reason)
			return
		}
	}
	t.Errorf("%s does not list %s (%s) among its bans: %+v", getter.Name, bad.Name, bad.IP(), st.Banned)
}

// corruptEvery flips one byte in every stride bytes of a file, keeping its
// size, so that every piece of it is bad. The blob is read-only, as the
// store leaves it: it is made writable first, as a disk fault would not ask.
func corruptEvery(t *testing.T, path string, stride int64) {
	t.Helper()
	waitFile(t, path)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatalf("corrupt %s: %v", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("corrupt %s: %v", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	for off := stride / 2; off < fi.Size(); off += stride {
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}
