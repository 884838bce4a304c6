package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
)

// The benchmarks behind docs/benchmarks.md's profile: one large and one
// small package of a signed repository, fetched through a real proxy on
// loopback by a forward-proxy HTTP client, as bench/cmd/single does. Run
// with e.g.
//
//	go test ./proxy -run '^$' -bench . -benchtime 20x -cpuprofile cpu.out

var benchPackages = []testrepo.Package{
	{Name: "large", Version: "1.0", Size: 64 << 20, Seed: 11},
	{Name: "small", Version: "1.0", Size: 13 << 10, Seed: 12},
}

// benchRig is a repository and its origin.
type benchRig struct {
	repo   *testrepo.Repo
	origin *testrepo.Origin
	kr     *apt.Keyring
}

func newBenchRig(b *testing.B) *benchRig { return newBenchRigOf(b, benchPackages) }

// newBenchRigOf is a repository of pkgs and its origin.
func newBenchRigOf(b *testing.B, pkgs []testrepo.Package) *benchRig {
	b.Helper()
	repo := testrepo.Build(b, testrepo.Options{Packages: pkgs})
	origin := testrepo.Serve(b, repo.Dir)
	kr, err := apt.LoadKeyring(repo.Key.KeyringPath)
	if err != nil {
		b.Fatal(err)
	}
	return &benchRig{repo: repo, origin: origin, kr: kr}
}

// proxy starts a node on a fresh store, with apt's index of the repository
// fetched through it (so every package is an indexed file), and returns an
// HTTP client that uses it as a forward proxy.
func (r *benchRig) proxy(b *testing.B) (*http.Client, func()) {
	b.Helper()
	n := r.node(b)
	pu, _ := url.Parse(n.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: 16, DisableCompression: true}}
	return client, n.Stop
}

// node starts a node on a fresh store, with apt's index of the repository
// fetched through it.
func (r *benchRig) node(b *testing.B) *noderig.Node {
	b.Helper()
	n := noderig.Start(b, noderig.Options{OriginURLs: []string{r.origin.URL}, Quiet: true,
		Config: func(c *node.Config) { c.AptKeyring = r.kr }})
	c := aptenv.New(b, aptenv.Options{Proxy: n.URL, Sources: []aptenv.Source{{URL: r.origin.URL, Keyring: r.repo.Key.KeyringPath, Suite: r.repo.Suite}}})
	if _, err := c.Update(context.Background()); err != nil {
		n.Stop()
		b.Fatal(err)
	}
	return n
}

func (r *benchRig) url(name string) string { return r.origin.URL + "/" + r.repo.Debs[name].Path }

// benchGet fetches u and returns the body length, failing on any other status
// than 200 or a short body.
func benchGet(b *testing.B, c *http.Client, u string, want int64, buf []byte) {
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, resp.Body, buf)
	if err != nil || resp.StatusCode != http.StatusOK || n != want {
		b.Fatalf("GET %s: status %d, %d bytes (want %d), %v", u, resp.StatusCode, n, want, err)
	}
}

// BenchmarkHotHit fetches an already-cached package over a kept-alive
// connection: the path of every cache hit (index lookup, sendfile).
func BenchmarkHotHit(b *testing.B) {
	r := newBenchRig(b)
	c, stop := r.proxy(b)
	defer stop()
	buf := make([]byte, 256<<10)
	for _, name := range []string{"large", "small"} {
		size := r.repo.Debs[name].Size
		benchGet(b, c, r.url(name), size, buf) // now cached
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				benchGet(b, c, r.url(name), size, buf)
			}
		})
	}
}

// BenchmarkColdFetch fetches a package through a proxy that does not
// hold it: download from the origin, hash, store, commit, and serve
// to the client. For the small package the per-file cost dominates. The
// direct sub-benchmarks fetch the same package from the origin itself over
// a kept-alive connection: what a request that apt sends alone (with
// nothing pipelined behind it) costs without the proxy.
func BenchmarkColdFetch(b *testing.B) {
	r := newBenchRig(b)
	buf := make([]byte, 256<<10)
	for _, name := range []string{"large", "small"} {
		size := r.repo.Debs[name].Size
		b.Run(name+"/direct", func(b *testing.B) {
			b.SetBytes(size)
			benchDirect(b, []string{r.url(name)}, []int64{size}, buf)
		})
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for range b.N {
				b.StopTimer()
				c, stop := r.proxy(b)
				b.StartTimer()
				benchGet(b, c, r.url(name), size, buf)
				b.StopTimer()
				stop()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkColdLone fetches packages the node does not hold one after
// another over one kept-alive connection, each request sent alone: what
// apt pays per file when its pipeline has run dry and the node has started
// nothing ahead (docs/benchmarks.md, "The 180-package gap on loopback").
// The packages are of 200 KB, the mean of bench/single's 180-package set;
// the node is restarted on a fresh store, the timer stopped, whenever all
// have been fetched. direct is the same requests straight to the origin.
func BenchmarkColdLone(b *testing.B) {
	pkgs := make([]testrepo.Package, 48)
	for i := range pkgs {
		pkgs[i] = testrepo.Package{Name: fmt.Sprintf("lone%02d", i), Size: 200 << 10, Seed: int64(100 + i), Compression: "none"}
	}
	r := newBenchRigOf(b, pkgs)
	buf := make([]byte, 256<<10)
	sizes := make([]int64, len(pkgs))
	urls := make([]string, len(pkgs))
	for i, p := range pkgs {
		sizes[i], urls[i] = r.repo.Debs[p.Name].Size, r.url(p.Name)
	}
	b.Run("direct", func(b *testing.B) { benchDirect(b, urls, sizes, buf) })
	b.Run("pkgswarm", func(b *testing.B) {
		c, stop := r.proxy(b)
		i := 0
		for b.Loop() {
			if i == len(urls) {
				b.StopTimer()
				stop()
				c, stop = r.proxy(b)
				i = 0
				b.StartTimer()
			}
			benchGet(b, c, urls[i], sizes[i], buf)
			i++
		}
		stop()
	})
}

// benchDirect fetches urls (of sizes) in turn straight from the origin
// over one kept-alive connection, each once before the timer starts (the
// connection, the origin's page cache).
func benchDirect(b *testing.B, urls []string, sizes []int64, buf []byte) {
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer c.CloseIdleConnections()
	for i := range urls {
		benchGet(b, c, urls[i], sizes[i], buf)
	}
	i := 0
	for b.Loop() {
		benchGet(b, c, urls[i], sizes[i], buf)
		i = (i + 1) % len(urls)
	}
}

// BenchmarkQuickHit asks for the small cached package over one kept-alive
// connection with a raw request and reads the answer into a fixed buffer,
// so that the allocations reported are the node's alone: the path of the
// quick lane (bench/cmd/single's small-file step). Run with -benchmem.
func BenchmarkQuickHit(b *testing.B) {
	r := newBenchRig(b)
	n := r.node(b)
	defer n.Stop()
	u := r.url("small")
	size := r.repo.Debs["small"].Size
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.URL, "http://"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	host := strings.TrimPrefix(r.origin.URL, "http://")
	req := []byte("GET " + u + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: bench\r\n\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	body := make([]byte, size)
	get := func() string {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		var src string
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) <= 2 {
				break
			}
			if bytes.HasPrefix(line, []byte("X-Pkgswarm-Source: ")) {
				src = string(bytes.TrimSpace(line[len("X-Pkgswarm-Source: "):]))
			}
		}
		if _, err := io.ReadFull(br, body); err != nil {
			b.Fatal(err)
		}
		return src
	}
	get() // fetched and cached
	if src := get(); src != "cache" {
		b.Fatalf("GET %s: second answer from %q, want the cache", u, src)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		get()
	}
}
