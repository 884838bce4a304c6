package swarm

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freeUDPPort returns a port that was free on 127.0.0.1 a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A plain BitTorrent client fetches a seeded blob from its magnet link,
// finding the seeder only through our DHT (aria2c ignores x.pe), with no
// tracker and no other DHT node.
func TestAria2cDownloadsByMagnet(t *testing.T) {
	aria2c, err := exec.LookPath("aria2c")
	if err != nil {
		t.Fatal("aria2c is required for the BitTorrent interop test: install the Debian package aria2")
	}
	blobs := newDirBlobs(t)
	data := randomBytes(5<<20+12345, 20)
	digest := blobs.put(t, data, "")
	size := int64(len(data))
	n := newNode(t, blobs)
	if err := n.Seed(digest, size); err != nil {
		t.Fatal(err)
	}
	magnet, err := n.Magnet(digest, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("magnet: %s", magnet)

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, aria2c,
		"--dir="+dir,
		"--enable-dht=true",
		"--enable-dht6=false",
		"--disable-ipv6=true",
		"--dht-entry-point="+n.DHTAddr(),
		"--dht-listen-port="+strconv.Itoa(freeUDPPort(t)),
		"--listen-port="+strconv.Itoa(freeTCPPort(t)),
		"--dht-file-path="+filepath.Join(dir, "dht.dat"),
		"--bt-enable-lpd=false",
		"--enable-peer-exchange=false",
		"--bt-save-metadata=false",
		"--seed-time=0",
		"--bt-stop-timeout=120",
		"--file-allocation=none",
		"--summary-interval=0",
		"--console-log-level=warn",
		"--no-conf=true",
		magnet,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("aria2c output:\n%s", out)
	if err != nil {
		t.Fatalf("aria2c failed: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, digest))
	if err != nil {
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("aria2c left no file named by the digest (%s): %v", strings.Join(names, ", "), err)
	}
	if digestOf(got) != digest {
		t.Fatalf("aria2c's file hashes to %s, want %s", digestOf(got), digest)
	}
	if up := n.Stats().BytesUp; up < size {
		t.Errorf("node uploaded %d bytes, want ≥ %d", up, size)
	}
}
