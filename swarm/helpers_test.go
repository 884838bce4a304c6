package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// dirBlobs is a content store of the simplest kind: dir/<hex> files.
type dirBlobs struct {
	dir   string
	opens atomic.Int64
}

var _ Blobs = (*dirBlobs)(nil)

func (b *dirBlobs) OpenBlob(hexDigest string) (*os.File, int64, error) {
	b.opens.Add(1)
	f, err := os.Open(filepath.Join(b.dir, hexDigest))
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func newDirBlobs(t testing.TB) *dirBlobs { return &dirBlobs{dir: t.TempDir()} }

// randomBytes returns deterministic pseudo-random bytes.
func randomBytes(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// put stores data under its digest (or under name when not "") and returns the name.
func (b *dirBlobs) put(t testing.TB, data []byte, name string) string {
	t.Helper()
	if name == "" {
		name = digestOf(data)
	}
	if err := os.WriteFile(filepath.Join(b.dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// ipSeq hands out distinct loopback IPs so that every node has its own host
// address (bans are by IP).
var ipSeq atomic.Int32

func nextIP() string {
	n := ipSeq.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 10+n/250, 1+n%250)
}

type nodeOpt func(*Config)

func withBootstrap(addrs ...string) nodeOpt {
	return func(c *Config) { c.Bootstrap = append(c.Bootstrap, addrs...) }
}

func withUploadRate(r int64) nodeOpt { return func(c *Config) { c.UploadRate = r } }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(string(p))
	return len(p), nil
}

func newNode(t testing.TB, blobs Blobs, opts ...nodeOpt) *Node {
	t.Helper()
	return newNodeDir(t, t.TempDir(), blobs, opts...)
}

func newNodeDir(t testing.TB, dataDir string, blobs Blobs, opts ...nodeOpt) *Node {
	t.Helper()
	cfg := Config{
		DataDir:    dataDir,
		ListenAddr: nextIP() + ":0",
		Mode:       "lan",
		MinSize:    -1,
		Blobs:      blobs,
		Logger:     testLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// fetchAll fetches a blob and returns its bytes.
func fetchAll(ctx context.Context, n *Node, hexDigest string, size int64, webSeeds ...string) ([]byte, error) {
	rc, err := n.Fetch(ctx, hexDigest, size, webSeeds)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
