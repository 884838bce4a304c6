package trust

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

func newTestResolver(t *testing.T, now func() time.Time) *Resolver {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), InMemoryIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f, err := fetch.New(fetch.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	r, err := New(Config{Store: st, Fetch: f, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// Issue 11, item 8: a parse that failed (a bomb, a truncated index) is not
// started again by every request for the file: it is remembered per digest
// and retried only after parseRetry.
func TestFailedParseIsRemembered(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r := newTestResolver(t, clock)
	var runs atomic.Int32
	var refused []string
	r.cfg.OnRefused = func(u string, err error) { refused = append(refused, u) }
	bomb := func() (int, error) { runs.Add(1); return 0, errors.New("decompressed data exceeds the size limit") }
	d := store.DigestOf([]byte("Packages.xz"))
	for range 5 {
		r.parseOnce("http://mirror.test/debian", d, "index", "http://mirror.test/debian/dists/x/main/binary-amd64/Packages.xz", bomb)
		r.wg.Wait()
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("a failing parse ran %d times for 5 requests, want 1", n)
	}
	if len(refused) != 1 {
		t.Fatalf("%d failures reported, want 1", len(refused))
	}
	mu.Lock()
	now = now.Add(parseRetry + time.Second)
	mu.Unlock()
	r.parseOnce("http://mirror.test/debian", d, "index", "x", bomb)
	r.wg.Wait()
	if n := runs.Load(); n != 2 {
		t.Fatalf("after %v the parse ran %d times in all, want a retry (2)", parseRetry, n)
	}
}

// A parse that succeeded is not run again, in this process or the next.
func TestParseRunsOnce(t *testing.T) {
	t.Parallel()
	r := newTestResolver(t, nil)
	var runs atomic.Int32
	ok := func() (int, error) { runs.Add(1); return 3, nil }
	d := store.DigestOf([]byte("primary.xml.gz"))
	for range 3 {
		r.parseOnce("http://m.test/r", d, "primary.xml", "p", ok)
		r.wg.Wait()
	}
	r2, err := New(Config{Store: r.st, Fetch: r.fetch})
	if err != nil {
		t.Fatal(err)
	}
	r2.parseOnce("http://m.test/r", d, "primary.xml", "p", ok)
	r2.wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("a parse that succeeded ran %d times, want 1", n)
	}
}

// Expectations read are kept in memory, and reading a kept one costs no
// allocation (every hit of a cached package asks; its key was a new string
// each time); a newer chain's write replaces them there too (a new root
// lists a new Packages digest under one URL).
func TestExpectationsInMemoryFollowWrites(t *testing.T) {
	r := newTestResolver(t, nil)
	u := "http://m.test/debian/dists/stable/main/binary-amd64/Packages.xz"
	old := store.Expect{SHA256: store.DigestOf([]byte("old")), Size: 3, Root: "r"}
	if err := r.putExpects(map[string]store.Expect{expectKey(FormatApt, u): old}); err != nil {
		t.Fatal(err)
	}
	if e, err := r.expect(FormatApt, u); err != nil || e != old {
		t.Fatalf("first read: %+v, %v", e, err)
	}
	if n := testing.AllocsPerRun(100, func() { r.expect(FormatApt, u) }); n != 0 {
		t.Errorf("reading a kept expectation: %.0f allocations, want 0", n)
	}
	newer := store.Expect{SHA256: store.DigestOf([]byte("new")), Size: 3, Root: "r"}
	b := r.newBatch()
	if err := b.add(expectKey(FormatApt, u), newer); err != nil {
		t.Fatal(err)
	}
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	if e, err := r.expect(FormatApt, u); err != nil || e != newer {
		t.Fatalf("after a newer write: %+v, %v; want the newer expectation", e, err)
	}
	if _, err := r.expect(FormatRPMMD, u); !store.IsNotFound(err) {
		t.Fatalf("another format's namespace: %v, want not found", err)
	}
}
