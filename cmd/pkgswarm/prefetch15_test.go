package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
)

// Issue 15 item 5: prefetch says how much a suite takes before it starts,
// and beyond the node's cache bound it needs --yes (no terminal to ask).
func TestPrefetchShowsTotalFirst(t *testing.T) {
	repo := testrepo.Build(t, testrepo.Options{Packages: opPackages})
	origin := testrepo.Serve(t, repo.Dir)
	kr, err := apt.LoadKeyring(repo.Key.KeyringPath)
	if err != nil {
		t.Fatal(err)
	}
	n := noderig.Start(t, noderig.Options{OriginURLs: []string{origin.URL}, Quiet: true, MaxBytes: 256 << 10,
		Config: func(c *node.Config) { c.AptKeyring = kr }})
	args := []string{"prefetch", "--server", n.URL, "--url", origin.URL, "--suite", repo.Suite, "--arch", "amd64"}

	out, errOut, code := runPkgswarm(t, safeEnv(t), args...)
	if code == 0 {
		t.Fatalf("prefetch of 420 KiB into a 256 KiB cache went on without --yes:\n%s%s", out, errOut)
	}
	if !regexp.MustCompile(`(?m)^to fetch: 3 packages, 4\d\d\.\d KiB \(the node's cache: bound 256\.0 KiB\)$`).MatchString(out) ||
		!strings.Contains(errOut, "--yes") || !strings.Contains(errOut, "--package") {
		t.Errorf("prefetch beyond the cache bound says:\n%s%s", out, errOut)
	}
	if got := origin.Requests(".deb"); got != 0 {
		t.Errorf("%d packages fetched before the answer", got)
	}

	out, errOut, code = runPkgswarm(t, safeEnv(t), append(args, "--yes", "--package", "alpha")...)
	if code != 0 || !strings.Contains(out, "to fetch: 1 package, 2") || !strings.Contains(out, "main: 3 packages listed") ||
		!strings.Contains(out, "prefetched 1 package (2") {
		t.Errorf("prefetch --yes --package alpha: exit %d\n%s%s", code, out, errOut)
	}
}

// Issue 15 item 5: Ctrl-C prints one line, not one "is serve running?"
// per package it did not get to.
func TestPrefetchInterruptOneLine(t *testing.T) {
	var pkgs []testrepo.Package
	for i := range 40 {
		pkgs = append(pkgs, testrepo.Package{Name: fmt.Sprintf("pkg%02d", i), Version: "1.0", Size: 4 << 10, Seed: int64(i + 1)})
	}
	repo := testrepo.Build(t, testrepo.Options{Packages: pkgs})
	origin := testrepo.Serve(t, repo.Dir)
	// A node that answers the root and the index from the origin and holds
	// every package request open, as a slow download does.
	debs := make(chan string, 100)
	var mu sync.Mutex
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, p, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if strings.HasSuffix(p, ".deb") {
			debs <- p
			<-r.Context().Done()
			return
		}
		resp, err := http.Get(origin.URL + "/" + p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("X-Pkgswarm-Source", "origin")
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer node.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := pkgswarmCmd(t, ctx, safeEnv(t), "prefetch", "--server", node.URL, "--url", origin.URL, "--suite", repo.Suite, "--arch", "amd64", "--jobs", "3")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-debs:
		case <-ctx.Done():
			t.Fatalf("prefetch did not start its downloads\n%s%s", out.String(), errOut.String())
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out.String() + errOut.String()))
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "interrupted") || strings.Contains(l, "failed") || strings.Contains(l, "pkgswarm serve") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "prefetch interrupted: 0 of 40 packages fetched") {
		t.Errorf("after Ctrl-C, prefetch said (%d lines):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("an interrupted prefetch exits 0")
	}
}
