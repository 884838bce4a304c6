package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// TestVerifyAndGC: verify drops a blob corrupted on disk and keeps the
// rest; gc shrinks the cache to a size; both refuse a running node's cache.
func TestVerifyAndGC(t *testing.T) {
	n := newOpNode(t, nil)
	n.aptDownload(t, n.aptClient(t), "alpha", "bravo", "charlie")
	for _, cmd := range []string{"verify", "gc"} {
		args := []string{cmd, "--data-dir", n.dir}
		if cmd == "gc" {
			args = append(args, "--size", "1M")
		}
		if _, _, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), "stop it first") {
			t.Fatalf("%s on a running node's cache: %v", cmd, err)
		}
	}
	n.Stop()
	// Counted once the node has stopped: clients are answered on digest
	// match, before the store's commit, so a count taken while it runs may
	// miss the last blob.
	st, err := store.Open(store.Options{Dir: n.dir})
	if err != nil {
		t.Fatal(err)
	}
	blobs, bytes := st.Usage()
	st.Close()

	victim := n.repo.Debs["bravo"].SHA256
	path := filepath.Join(n.dir, "blobs", "sha256", victim[:2], victim)
	os.Chmod(path, 0o644)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0xff
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "verify", "--data-dir", n.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "dropped "+victim) || !strings.Contains(out, "verified "+strconv.Itoa(blobs)+" files") || !strings.Contains(out, ": 1 file did not match and was dropped") {
		t.Fatalf("verify output:\n%s", out)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the corrupt blob is still on disk: %v", err)
	}
	out, _, err = runCLI(t, "verify", "--data-dir", n.dir)
	if err != nil || !strings.Contains(out, ": every file matches its digest") {
		t.Fatalf("second verify: %v\n%s", err, out)
	}

	out, _, err = runCLI(t, "gc", "--data-dir", n.dir, "--size", "64K")
	if err != nil {
		t.Fatal(err)
	}
	st, err = store.Open(store.Options{Dir: n.dir})
	if err != nil {
		t.Fatal(err)
	}
	_, after := st.Usage()
	st.Close()
	if after > 64<<10 || after >= bytes || !strings.Contains(out, "freed") {
		t.Fatalf("after gc --size 64K the cache holds %d bytes (before %d):\n%s", after, bytes, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gc", "--data-dir", n.dir, "--size", "lots"}, "--size: size \"lots\""},
		{[]string{"gc", "--data-dir", n.dir}, "Required flag \"size\""},
		{[]string{"verify", "--data-dir", t.TempDir()}, "no pkgswarm cache in"},
	} {
		if _, _, err := runCLI(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
