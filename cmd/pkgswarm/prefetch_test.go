package main

import (
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// TestPrefetchWarmsTheCache: prefetch fetches the suite's root, index and
// every .deb through a real node; a second run is served from its cache.
func TestPrefetchWarmsTheCache(t *testing.T) {
	n := newOpNode(t, nil)
	args := []string{"prefetch", "--server", n.URL, "--url", n.origin.URL, "--suite", n.repo.Suite, "--arch", "amd64"}
	out, _, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "main: 3 packages listed") || !strings.Contains(out, "prefetched 3 packages") {
		t.Fatalf("prefetch output:\n%s", out)
	}
	for name, d := range n.repo.Debs {
		dg, _ := store.ParseDigest(d.SHA256)
		if !committed(n.Store, dg) {
			t.Fatalf("%s is not in the cache after prefetch", name)
		}
	}
	if got := n.origin.Requests(".deb"); got != len(n.repo.Debs) {
		t.Fatalf("%d origin .deb requests, want %d", got, len(n.repo.Debs))
	}
	out, _, err = runCLI(t, args...)
	if err != nil || !strings.Contains(out, "3 were already cached") || n.origin.Requests(".deb") != len(n.repo.Debs) {
		t.Fatalf("second prefetch (%v, %d origin .deb requests):\n%s", err, n.origin.Requests(".deb"), out)
	}

	t.Run("named packages", func(t *testing.T) {
		out, _, err := runCLI(t, append(args, "--package", "alpha", "--package", "zulu")...)
		if err == nil || !strings.Contains(err.Error(), "no package named zulu") || !strings.Contains(out, "prefetched 1 package ") {
			t.Fatalf("prefetch of alpha and a missing zulu: %v\n%s", err, out)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown suite", []string{"prefetch", "--server", n.URL, "--url", n.origin.URL, "--suite", "nosuch"}, "the root of " + n.origin.URL + "/dists/nosuch"},
		{"unknown arch", []string{"prefetch", "--server", n.URL, "--url", n.origin.URL, "--suite", n.repo.Suite, "--arch", "s390x"}, "check --component and --arch"},
		{"not a URL", []string{"prefetch", "--server", n.URL, "--url", "deb.example.org/debian", "--suite", "x"}, "not an absolute http(s) URL"},
		{"no node", []string{"prefetch", "--server", "http://127.0.0.1:1", "--url", n.origin.URL, "--suite", "x"}, "cannot reach pkgswarm at http://127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := runCLI(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v: %v, want an error saying %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestPrefetchUrpmiMedium: prefetch --medium fetches a urpmi medium's
// synthesis and every rpm it lists through a real node, which verifies
// their signatures; a second run is served from the cache.
func TestPrefetchUrpmiMedium(t *testing.T) {
	tree := rpmrepo.Build(t, rpmrepo.Options{Packages: []rpmrepo.Package{
		{Name: "alpha", Size: 20 << 10, Seed: 1},
		{Name: "bravo", Version: "2.1", Size: 100 << 10, Seed: 2},
	}})
	origin := testrepo.Serve(t, tree.Dir)
	node := noderig.Start(t, noderig.Options{OriginURLs: []string{origin.URL}, Quiet: true})
	st := node.Store

	m := tree.Media[0]
	args := []string{"prefetch", "--server", node.URL, "--medium", origin.URL + "/" + m.URLPath}
	out, _, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, ": 2 packages listed") || !strings.Contains(out, "prefetched 2 packages") {
		t.Fatalf("prefetch output:\n%s", out)
	}
	for _, b := range m.Packages {
		if !committed(st, store.Digest(b.SHA256)) {
			t.Fatalf("%s is not in the cache after prefetch", b.NEVRA)
		}
	}
	before := origin.Requests(".rpm")
	out, _, err = runCLI(t, args...)
	if err != nil || !strings.Contains(out, "2 were already cached") || origin.Requests(".rpm") != before {
		t.Fatalf("second prefetch (%v, %d more origin .rpm requests):\n%s", err, origin.Requests(".rpm")-before, out)
	}
	if _, _, err := runCLI(t, "prefetch", "--server", node.URL, "--medium", origin.URL+"/"+m.URLPath, "--suite", "x"); err == nil || !strings.Contains(err.Error(), "or --medium") {
		t.Fatalf("--medium with --suite: %v", err)
	}
}

// committed waits (up to 10 s) for blob d to be in the store: a client is
// answered as soon as a download's digest matches, and the commit (fsync,
// rename) may finish a moment later.
func committed(st *store.Store, d store.Digest) bool {
	for deadline := time.Now().Add(10 * time.Second); !st.HasBlob(d); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
