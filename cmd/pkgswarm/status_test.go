package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgswarm/pkgswarm/discovery"
	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
)

// opApp is the CLI with the operator commands, whether or not main.go
// lists them yet.
func opApp(stdout, stderr io.Writer) *cli.App {
	app := newApp()
	have := map[string]bool{}
	for _, c := range app.Commands {
		have[c.Name] = true
	}
	for _, c := range operatorCommands() {
		if !have[c.Name] {
			app.Commands = append(app.Commands, c)
		}
	}
	app.Writer, app.ErrWriter = stdout, stderr
	app.ExitErrHandler = func(*cli.Context, error) {} // return errors, never os.Exit
	return app
}

// runCLI runs pkgswarm with args and returns what it printed.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = opApp(&out, &errOut).RunContext(ctx, append([]string{"pkgswarm"}, args...))
	return out.String(), errOut.String(), err
}

// opNode is a real pkgswarm node in front of a real signed repository.
type opNode struct {
	*noderig.Node
	repo   *testrepo.Repo
	origin *testrepo.Origin
	dir    string
}

var opPackages = []testrepo.Package{
	{Name: "alpha", Version: "1.0", Size: 20 << 10, Seed: 1},
	{Name: "bravo", Version: "2:2.1-1", Size: 100 << 10, Seed: 2},
	{Name: "charlie", Version: "0.9", Size: 300 << 10, Seed: 3},
}

func newOpNode(t *testing.T, peerList func() any) *opNode {
	t.Helper()
	repo := testrepo.Build(t, testrepo.Options{Packages: opPackages})
	n := &opNode{repo: repo, origin: testrepo.Serve(t, repo.Dir), dir: t.TempDir()}
	n.start(t, peerList)
	return n
}

func (n *opNode) start(t *testing.T, peerList func() any) {
	t.Helper()
	kr, err := apt.LoadKeyring(n.repo.Key.KeyringPath)
	if err != nil {
		t.Fatal(err)
	}
	n.Node = noderig.Start(t, noderig.Options{Dir: n.dir, OriginURLs: []string{n.origin.URL}, Quiet: true,
		Config: func(c *node.Config) {
			c.AptKeyring, c.NodeID, c.Peers = kr, "0123456789abcdef0123", peerList
		}})
}

// aptClient is an isolated apt-get using the node as its forward proxy.
func (n *opNode) aptClient(t *testing.T, extra ...string) *aptenv.Client {
	return aptenv.New(t, aptenv.Options{Proxy: n.URL, Config: extra,
		Sources: []aptenv.Source{{URL: n.origin.URL, Keyring: n.repo.Key.KeyringPath, Suite: n.repo.Suite}}})
}

func (n *opNode) aptDownload(t *testing.T, c *aptenv.Client, pkgs ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := c.Update(ctx); err != nil {
		t.Fatalf("apt-get update: %v\n%s", err, out)
	}
	if len(pkgs) == 0 {
		return
	}
	if out, err := c.Download(ctx, pkgs...); err != nil {
		t.Fatalf("apt-get download: %v\n%s", err, out)
	}
}

func TestStatusAndPeers(t *testing.T) {
	peerSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"id":"feedfacefeedface99","version":"test"}`)
	}))
	defer peerSrv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	disc, err := discovery.New(discovery.Config{NodeID: "0123456789abcdef0123", Static: []string{peerSrv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	go disc.Run(ctx)
	n := newOpNode(t, func() any { return disc.Peers() })
	n.aptDownload(t, n.aptClient(t), "alpha", "bravo")
	for len(disc.Peers()) == 0 || !disc.Peers()[0].Healthy {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	// apt is answered when a download's digest matches; the commit (fsync,
	// rename) ends a moment later: compare figures once nothing is in flight.
	if !noderig.Eventually(func() bool { return len(n.Fetch.Transfers()) == 0 }) {
		t.Fatal("downloads still in flight after apt finished")
	}
	st := n.State()

	t.Run("status table", func(t *testing.T) {
		out, _, err := runCLI(t, "status", "--server", n.URL)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"node       0123456789abcdef0123",
			fmt.Sprintf("hit ratio  %.1f %%  (%d hits, %d misses)", 100*st.HitRatio, st.Requests["hit"], st.Requests["miss"]),
			"origin " + status.FormatBytes(st.Served["origin"]),
			fmt.Sprintf("cache      %d files, %s (unbounded)", st.Store.Blobs, status.FormatBytes(st.Store.Bytes)),
			"repositories (1)", "verified  " + st.Repos[0].Repo, st.Repos[0].Signer,
			"verification failures (0)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("status json", func(t *testing.T) {
		out, _, err := runCLI(t, "status", "--json", "--server", n.URL)
		if err != nil {
			t.Fatal(err)
		}
		var got status.Status
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("status --json is not the status document: %v\n%s", err, out)
		}
		if got.Store != st.Store || got.Served["origin"] != st.Served["origin"] || len(got.Repos) != 1 {
			t.Fatalf("status --json = %+v, want %+v", got, st)
		}
	})
	t.Run("peers table", func(t *testing.T) {
		out, _, err := runCLI(t, "peers", "--server", n.URL)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "healthy") || !strings.Contains(out, "feedfacefeedface") || !strings.Contains(out, peerSrv.URL) ||
			!strings.Contains(out, "127.0.0.1") || !strings.Contains(out, "static") {
			t.Fatalf("peers output does not show the healthy static peer %s:\n%s", peerSrv.URL, out)
		}
	})
	t.Run("peers json", func(t *testing.T) {
		out, _, err := runCLI(t, "peers", "--json", "--server", n.URL)
		if err != nil {
			t.Fatal(err)
		}
		var got []status.Peer
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].URL != peerSrv.URL || !got[0].Healthy {
			t.Fatalf("peers --json = %v (%v), want the one healthy peer:\n%s", got, err, out)
		}
	})
	t.Run("no node", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		_, _, err := runCLI(t, "status", "--server", dead.URL)
		if err == nil || !strings.Contains(err.Error(), "cannot reach pkgswarm at "+dead.URL) || !strings.Contains(err.Error(), "--server") {
			t.Fatalf("status against nothing: %v, want advice naming the URL and --server", err)
		}
		_, _, err = runCLI(t, "peers", "--server", peerSrv.URL)
		if err == nil || !strings.Contains(err.Error(), "is --server a pkgswarm node") {
			t.Fatalf("peers against a non-node: %v", err)
		}
	})
}

func TestRenderProgress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		done, total int64
		want        string
	}{
		{"empty", 0, 0, "x [>                       ]   0%  0 B / 0 B"},
		{"half", 512 << 10, 1 << 20, "x [============>           ]  50%  512.0 KiB / 1.0 MiB"},
		{"full", 1 << 20, 1 << 20, "x [========================] 100%  1.0 MiB / 1.0 MiB"},
		{"over", 2 << 20, 1 << 20, "x [========================] 100%  2.0 MiB / 1.0 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := renderProgress("x", tc.done, tc.total, 0); got != tc.want {
				t.Fatalf("renderProgress(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
			}
		})
	}
}

// FuzzDecodePeers: whatever peer table a node sends, peers decodes it as
// the status document's or refuses it; printing never panics.
func FuzzDecodePeers(f *testing.F) {
	f.Add([]byte(`[{"id":"a","url":"http://10.0.0.2:3142","addrs":["10.0.0.2"],"healthy":true,"last_seen":"2026-01-02T03:04:05Z"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"ID":1}`))
	f.Add([]byte(`[{"Addrs":["::1","x"],"Failures":-3}]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var peers []status.Peer
		if json.Unmarshal(doc, &peers) != nil {
			return
		}
		var out bytes.Buffer
		if err := printPeers(&out, peers, time.Unix(1e9, 0)); err != nil || out.Len() == 0 {
			t.Fatalf("printPeers: %v, %d bytes", err, out.Len())
		}
	})
}
