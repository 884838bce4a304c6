package main

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// putBlobs commits blobs of the given sizes, in order (the first is the
// least recently used).
func putBlobs(t *testing.T, st *store.Store, sizes ...int64) {
	t.Helper()
	for i, n := range sizes {
		data := make([]byte, n)
		copy(data, fmt.Sprintf("blob %d", i))
		w, err := st.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(store.Digest(sha256.Sum256(data))); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 15 item 4: gc stops near its target. The cache holds one big file
// at the cold end and many small ones: Store.Evict took the big one first
// and left far less than asked (1.5 GiB asked to keep 400 MiB ended at
// 9.7 MiB); gc now frees the small ones and keeps the target.
func TestGCStopsNearTarget(t *testing.T) {
	const mib = 1 << 20
	cache := filepath.Join(t.TempDir(), "cache")
	st, err := store.Open(store.Options{Dir: cache})
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int64{48 * mib}
	for range 40 {
		sizes = append(sizes, mib)
	}
	putBlobs(t, st, sizes...)
	st.Close()

	out, errOut, code := runPkgswarm(t, safeEnv(t), "gc", "--data-dir", cache, "--size", "60M")
	if code != 0 {
		t.Fatalf("gc: exit %d\n%s%s", code, out, errOut)
	}
	st, err = store.Open(store.Options{Dir: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, after := st.Usage()
	if after > 60*mib || after < 59*mib {
		t.Fatalf("gc --size 60M of an 88 MiB cache left %.1f MiB, want at most 60 and near it\n%s", float64(after)/mib, out)
	}
	if !strings.Contains(out, "-> 13 files, 60.0 MiB") {
		t.Errorf("gc says %q", out)
	}
}

func TestGCPlan(t *testing.T) {
	t.Parallel()
	b := func(id byte, size, access int64, pinned bool) gcBlob {
		return gcBlob{d: store.Digest{id}, size: size, access: access, pinned: pinned}
	}
	for _, tc := range []struct {
		name          string
		blobs         []gcBlob
		total, target int64
		want          []byte // ids, in order
	}{
		{"nothing to do", []gcBlob{b(1, 10, 1, false)}, 10, 10, nil},
		{"lru order", []gcBlob{b(2, 10, 2, false), b(1, 10, 1, false), b(3, 10, 3, false)}, 30, 15, []byte{1, 2}},
		{"big cold file waits", []gcBlob{b(1, 100, 1, false), b(2, 10, 2, false), b(3, 10, 3, false)}, 120, 100, []byte{2, 3}},
		{"smallest waiting one ends it", []gcBlob{b(1, 100, 1, false), b(2, 50, 2, false), b(3, 5, 3, false)}, 155, 120, []byte{3, 2}},
		{"pinned last", []gcBlob{b(1, 10, 1, true), b(2, 10, 2, false)}, 20, 10, []byte{2}},
		{"pinned when needed", []gcBlob{b(1, 10, 1, true), b(2, 10, 2, false)}, 20, 0, []byte{2, 1}},
		{"everything", []gcBlob{b(1, 10, 1, false), b(2, 10, 2, true)}, 20, 0, []byte{1, 2}},
	} {
		var got []byte
		for _, x := range gcPlan(tc.blobs, tc.total, tc.target) {
			got = append(got, x.d[0])
		}
		if string(got) != string(tc.want) {
			t.Errorf("%s: plan %v, want %v", tc.name, got, tc.want)
		}
	}
}
