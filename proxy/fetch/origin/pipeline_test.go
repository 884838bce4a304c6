package origin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// These tests run the pipeline (fetch.New) with the Client as its origin tier
// and real servers, so that they can move into a shared Source conformance
// suite: the origin-specific part is newOriginTier.

// newOriginTier returns the Client as a fetch.Source for the given servers,
// with the second (when given) as the mirror of the first's /debian.
func newOriginTier(t *testing.T, first *server, mirror *server) (*Client, map[string][]string) {
	t.Helper()
	var mirrors map[string][]string
	ports := []int{first.port}
	if mirror != nil {
		var err error
		mirrors, err = ParseMirrors([]string{first.URL + "/debian=" + mirror.URL + "/debian"})
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, mirror.port)
	}
	cfg := loopback(ports...)
	cfg.Mirrors = mirrors
	return newClient(t, cfg), mirrors
}

func newPipeline(t *testing.T, c *Client) (*fetch.Fetcher, *store.Store) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(store.Options{Dir: t.TempDir(), InMemoryIndex: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f, err := fetch.New(fetch.Config{Store: st, Origin: c, Mirrors: c.Mirrors, Logger: log, StallTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f, st
}

// dyingServer sends the headers of the whole file and its first cut bytes,
// then drops the connection.
func dyingServer(t *testing.T, payload []byte, cut int) *server {
	return newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
		w.Write(payload[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
}

// rangeLog records the Range headers a server received.
type rangeLog struct {
	mu     sync.Mutex
	ranges []string
}

func (l *rangeLog) add(r string) { l.mu.Lock(); l.ranges = append(l.ranges, r); l.mu.Unlock() }
func (l *rangeLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ranges...)
}

// The origin dies mid-body; the pipeline resumes from the mirror with a
// Range request at the offset it holds, through this client, and commits the
// file once it verifies. A client streaming the download gets every byte.
func TestPipelineResumesFromMirror(t *testing.T) {
	t.Parallel()
	for _, honourRange := range []bool{true, false} {
		t.Run("range="+strconv.FormatBool(honourRange), func(t *testing.T) {
			t.Parallel()
			payload := make([]byte, 1<<20)
			rand.Read(payload)
			sum := sha256.Sum256(payload)
			const cut = 300_000
			first := dyingServer(t, payload, cut)
			var log rangeLog
			mirror := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				log.add(r.Header.Get("Range"))
				if !honourRange {
					r.Header.Del("Range") // an origin that ignores Range answers 200 from byte 0
				}
				http.ServeContent(w, r, "hello.deb", time.Time{}, bytes.NewReader(payload))
			}))
			c, _ := newOriginTier(t, first, mirror)
			f, st := newPipeline(t, c)
			req := &fetch.Request{
				URL:    first.URL + "/debian/pool/main/h/hello/hello_2.10_amd64.deb",
				Expect: &repoindex.Expectation{SHA256: sum[:], Size: int64(len(payload)), Key: "sha256:" + hex.EncodeToString(sum[:]), Root: "test"},
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := f.Get(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			rd := res.Flight.NewReader(ctx)
			got, rerr := io.ReadAll(rd)
			rd.Close()
			if err := res.Flight.Err(); err != nil {
				t.Fatalf("download: %v", err)
			}
			if rerr != nil || !bytes.Equal(got, payload) {
				t.Fatalf("streamed %d bytes (%v), want the %d-byte file", len(got), rerr, len(payload))
			}
			if d := res.Flight.Digest(); d != store.Digest(sum) || !st.HasBlob(d) {
				t.Fatalf("committed %s, want %x in the store", d, sum)
			}
			rs := log.all()
			if len(rs) != 1 {
				t.Fatalf("the mirror was asked %d times (%q), want once", len(rs), rs)
			}
			off, ok := strings.CutPrefix(rs[0], "bytes=")
			n, err := strconv.Atoi(strings.TrimSuffix(off, "-"))
			if !ok || !strings.HasSuffix(off, "-") || err != nil || n <= 0 || n > cut {
				t.Fatalf("the mirror got Range %q, want bytes=N- with 0 < N <= %d", rs[0], cut)
			}
		})
	}
}

// The pipeline's small-file path revalidates through the client: 304 for a
// current held copy; a 404 at the origin moves on to the mirror.
func TestPipelineSmallFiles(t *testing.T) {
	t.Parallel()
	const etag = `"r1"`
	first := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/only-on-mirror") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "Origin: test\n")
	}))
	mirror := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from the mirror") }))
	c, _ := newOriginTier(t, first, mirror)
	f, _ := newPipeline(t, c)
	ctx := context.Background()
	u := first.URL + "/debian/dists/stable/InRelease"
	small, err := f.GetSmall(ctx, u, nil, 1<<20)
	if err != nil || string(small.Data) != "Origin: test\n" || small.Meta.ETag != etag || small.URL != u {
		t.Fatalf("GetSmall: %+v, %v", small, err)
	}
	if _, err := f.GetSmall(ctx, u, &store.URLEntry{ETag: etag}, 1<<20); !errors.Is(err, fetch.ErrNotModified) {
		t.Fatalf("GetSmall with a current held copy: %v, want ErrNotModified", err)
	}
	small, err = f.GetSmall(ctx, first.URL+"/debian/only-on-mirror", nil, 1<<20)
	if err != nil || string(small.Data) != "from the mirror" || small.URL != mirror.URL+"/debian/only-on-mirror" {
		t.Fatalf("GetSmall past a 404: %+v, %v", small, err)
	}
}
