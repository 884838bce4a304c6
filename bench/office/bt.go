package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/internal/office"
)

// The plain BitTorrent set-up, as a university would run it: the origin
// host seeds the large file with aria2c and runs a tracker; every node
// downloads the torrent with aria2c (no DHT, no local peer discovery; peer
// exchange on) and keeps seeding until the last node is done. The origin's
// 20 ms one-way delay lives in the HTTP relay, which BitTorrent does not
// use: here the uplink is only rate-shaped.

const (
	trackerPort = 6969
	btPort      = 6881
)

// tracker is a minimal BEP 3 HTTP tracker (compact peer lists), enough for
// aria2c: every announce adds the peer and answers with the others.
type tracker struct {
	mu    sync.Mutex                 // protects peers
	peers map[string]map[string]bool // infohash → "ip:port"
}

func (t *tracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ih := q.Get("info_hash")
	port, err := strconv.Atoi(q.Get("port"))
	host, _, herr := net.SplitHostPort(r.RemoteAddr)
	if ih == "" || err != nil || herr != nil {
		w.Write(mustBencode(map[string]any{"failure reason": "bad announce"}))
		return
	}
	self := net.JoinHostPort(host, strconv.Itoa(port))
	t.mu.Lock()
	set := t.peers[ih]
	if set == nil {
		set = map[string]bool{}
		t.peers[ih] = set
	}
	if q.Get("event") == "stopped" {
		delete(set, self)
	} else {
		set[self] = true
	}
	var compact bytes.Buffer
	for p := range set {
		if p == self {
			continue
		}
		ap, err := net.ResolveTCPAddr("tcp4", p)
		if err != nil || ap.IP.To4() == nil {
			continue
		}
		compact.Write(ap.IP.To4())
		compact.Write([]byte{byte(ap.Port >> 8), byte(ap.Port)})
	}
	t.mu.Unlock()
	w.Write(mustBencode(map[string]any{"interval": 5, "min interval": 1, "peers": compact.String()}))
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, s := range t.peers {
		n += len(s)
	}
	return n
}

func mustBencode(v any) []byte {
	b, err := bencode.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// runBitTorrent runs the plain BitTorrent set-up in o (nodes not started)
// and fills r: finish times, the origin link's bytes, upload per node.
func runBitTorrent(ctx context.Context, tb testing.TB, cfg config, o *office.Office, fx *fixture.Fixture, r *Run) {
	big := bigDeb(fx)
	src := filepath.Join(fx.Dir, filepath.FromSlash(big.Path))
	originIP := o.Origin.Host.IP().String()
	ln, err := office.ListenIn(o.Origin.Host, "tcp", net.JoinHostPort(originIP, strconv.Itoa(trackerPort)))
	if err != nil {
		tb.Fatalf("tracker: %v", err)
	}
	tr := &tracker{peers: map[string]map[string]bool{}}
	srv := &http.Server{Handler: tr}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })

	info := metainfo.Info{PieceLength: 1 << 20}
	if err := info.BuildFromFilePath(src); err != nil {
		tb.Fatalf("torrent: %v", err)
	}
	mi := metainfo.MetaInfo{Announce: "http://" + net.JoinHostPort(originIP, strconv.Itoa(trackerPort)) + "/announce"}
	if mi.InfoBytes, err = bencode.Marshal(info); err != nil {
		tb.Fatalf("torrent: %v", err)
	}
	dir := tb.TempDir()
	torrentPath := filepath.Join(dir, "big.torrent")
	f, err := os.Create(torrentPath)
	if err != nil {
		tb.Fatalf("torrent: %v", err)
	}
	if err := mi.Write(f); err != nil {
		tb.Fatalf("torrent: %v", err)
	}
	f.Close()

	common := []string{"--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=true",
		"--seed-ratio=0.0", "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn",
		"--listen-port=" + strconv.Itoa(btPort), "--disable-ipv6=true", "--bt-tracker-interval=2",
		"--max-overall-upload-limit=0", "--follow-torrent=false", "--auto-save-interval=0", "--bt-save-metadata=false",
		"--rpc-save-upload-metadata=false", "--deferred-input=true"}
	seed := o.Origin.Host.Command(context.Background(), "aria2c", append(common, "--dir="+filepath.Dir(src),
		"--bt-seed-unverified=true", "--check-integrity=false", torrentPath)...)
	if _, err := o.Origin.Host.StartCmd(seed); err != nil {
		tb.Fatalf("aria2c seeder: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for tr.count() < 1 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			tb.Fatalf("the aria2c seeder never announced to the tracker")
		}
		time.Sleep(100 * time.Millisecond)
	}

	m := newMeter(ctx, tb, o, nil)
	n := len(o.Nodes())
	dirs := make([]string, n)
	start := time.Now()
	for i, nd := range o.Nodes() {
		dirs[i] = tb.TempDir()
		hook := filepath.Join(dirs[i], "done.sh")
		os.WriteFile(hook, []byte("#!/bin/sh\ntouch "+filepath.Join(dirs[i], "done")+"\n"), 0o755)
		cmd := nd.Host.Command(context.Background(), "aria2c", append(common, "--dir="+filepath.Join(dirs[i], "data"),
			"--on-bt-download-complete="+hook, torrentPath)...)
		if _, err := nd.Host.StartCmd(cmd); err != nil {
			tb.Fatalf("aria2c on %s: %v", nd.Name, err)
		}
	}
	times := make([]time.Duration, n)
	limit := time.Now().Add(cfg.runTimeout)
	for left := n; left > 0; {
		if time.Now().After(limit) || ctx.Err() != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("%d of %d aria2c downloads not done after %v", left, n, cfg.runTimeout))
			break
		}
		time.Sleep(100 * time.Millisecond)
		for i := range n {
			if times[i] == 0 {
				if _, err := os.Stat(filepath.Join(dirs[i], "done")); err == nil {
					times[i] = time.Since(start)
					left--
				}
			}
		}
	}
	// Upload and origin are counted up to the last node done; the seeds
	// then stop (the lab's cleanup kills every aria2c).
	var up []int64
	for _, nd := range o.Nodes() {
		up = append(up, m.tx(ctx, nd.Host))
	}
	r.UploadMean, r.UploadMax = meanMax(up)
	r.NodeUpload = up
	r.OriginLinkTx = m.tx(ctx, o.Origin.Host)
	r.OriginBytes = r.OriginLinkTx
	r.UniqueBytes = big.Size
	r.OriginRatio = round(float64(r.OriginLinkTx) / float64(big.Size))
	r.NodeSeconds = make([]float64, n)
	for i := range n {
		r.NodeSeconds[i] = round(times[i].Seconds())
		if times[i] == 0 {
			continue
		}
		got, err := sha256File(filepath.Join(dirs[i], "data", filepath.Base(src)))
		if err != nil || got != big.SHA256 {
			r.Errors = append(r.Errors, fmt.Sprintf("node%d: the downloaded file has SHA-256 %s (%v), want %s", i, got, err, big.SHA256))
		}
	}
	r.FinishSeconds, r.FirstSeconds = maxMin(r.NodeSeconds)
	r.Notes = append(r.Notes, fmt.Sprintf("BitTorrent moves only %s (%.1f MB); origin bytes are the origin link's (IP level)", big.Name, float64(big.Size)/1e6))
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
