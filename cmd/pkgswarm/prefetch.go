package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/pkgswarm/pkgswarm/repoindex/apt"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

func prefetchCommand() *cli.Command {
	return &cli.Command{
		Name:  "prefetch",
		Usage: "warm a running node's cache with an apt suite (root, Packages, every or the named .deb) or a urpmi medium (synthesis, .rpm files)",
		Description: "Fetches, through the node at --server (URL-prefix mode), dists/SUITE/InRelease of the\n" +
			"repository at --url, the Packages index of each --component for --arch, then each package\n" +
			"they list (or only those named by --package). The node verifies everything as it would for\n" +
			"apt; prefetch checks each .deb's SHA-256 again as it arrives. With --medium, it fetches a\n" +
			"urpmi medium's media_info/synthesis.hdlist.cz and the rpms it lists (the node checks their\n" +
			"signatures; prefetch checks their sizes). It first says how many packages and bytes that is;\n" +
			"when that is more than the node's cache bound (serve's --cache-size), older files would be\n" +
			"evicted as new ones arrive, so it asks first (or needs --yes when not run on a terminal).\n" +
			"Ctrl-C stops it; what was fetched stays cached. Examples:\n\n" +
			"   pkgswarm prefetch --url http://deb.example.org/debian --suite bookworm --package hello\n" +
			"   pkgswarm prefetch --medium http://mirror.example.org/mageia/distrib/9/x86_64/media/core/release",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			serverFlag(),
			&cli.StringFlag{Name: "url", Usage: "apt repository root as in sources.list, e.g. http://deb.example.org/debian (http or https)"},
			&cli.StringFlag{Name: "suite", Usage: "apt suite or codename, e.g. bookworm"},
			&cli.StringSliceFlag{Name: "medium", Usage: "urpmi medium directory URL, the one holding media_info/ (repeatable; instead of --url and --suite)"},
			&cli.StringSliceFlag{Name: "component", Value: cli.NewStringSlice("main"), Usage: "component (repeatable)"},
			&cli.StringFlag{Name: "arch", Value: debianArch(), Usage: "Debian architecture of the Packages index"},
			&cli.StringSliceFlag{Name: "package", Usage: "only these packages, by name (repeatable; default every package of the index)"},
			&cli.IntFlag{Name: "jobs", Value: 4, Usage: "downloads at once"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "go on without asking when the packages take more than the node's cache bound (--cache-size)"},
		},
		Action: runPrefetch,
	}
}

// debianArch is the Debian name of this machine's architecture.
func debianArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	}
	return runtime.GOARCH
}

// prefetcher fetches repository files through a node in URL-prefix mode.
type prefetcher struct {
	server string // node base URL, no trailing slash
	client *http.Client
}

// viaNode is the prefix-mode URL of origin URL u: http://node/host/path,
// or http://node/https/host/path for an https origin.
func (p *prefetcher) viaNode(u string) (string, error) {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return "", fmt.Errorf("%q is not an absolute http(s) URL", u)
	}
	switch pu.Scheme {
	case "http":
		return p.server + "/" + pu.Host + pu.EscapedPath(), nil
	case "https":
		return p.server + "/https/" + pu.Host + pu.EscapedPath(), nil
	}
	return "", fmt.Errorf("%q: only http and https repositories can be proxied", u)
}

// get fetches origin URL u through the node. A 404 wraps errNotFound.
func (p *prefetcher) get(ctx context.Context, u string) (*http.Response, error) {
	nu, err := p.viaNode(u)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, nu, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach pkgswarm at %s: %w (is `pkgswarm serve` running? set --server)", p.server, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		err := fmt.Errorf("%s: %s: %s", u, resp.Status, firstLine(body))
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", errPrefetchNotFound, err)
		}
		return nil, err
	}
	return resp, nil
}

var errPrefetchNotFound = errors.New("not found")

type prefetchItem struct {
	name, url string
	size      int64  // -1 when unknown
	sha256    []byte // nil for rpms of a urpmi medium (the node checks their signature)
}

func runPrefetch(c *cli.Context) error {
	p := &prefetcher{server: strings.TrimRight(c.String("server"), "/"),
		client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}, Timeout: time.Hour}}
	want := map[string]bool{}
	for _, n := range c.StringSlice("package") {
		want[n] = true
	}
	seen := map[string]bool{} // package names found
	var items []prefetchItem
	var err error
	switch {
	case len(c.StringSlice("medium")) > 0 && c.String("url") == "" && c.String("suite") == "":
		items, err = p.urpmiItems(c, want, seen)
	case len(c.StringSlice("medium")) == 0 && c.String("url") != "" && c.String("suite") != "":
		items, err = p.aptItems(c, want, seen)
	default:
		return exitf(2, "prefetch: give --url and --suite (an apt suite), or --medium (urpmi media)")
	}
	if err != nil {
		return cli.Exit(err, 1)
	}
	var missing []string
	for n := range want {
		if !seen[n] {
			missing = append(missing, n)
		}
	}
	slices.Sort(missing)
	if err := p.confirm(c, items); err != nil {
		return err
	}
	if err := p.fetchAll(c, items); err != nil {
		return err
	}
	if len(missing) > 0 {
		return exitf(1, "prefetch: no package named %s there", strings.Join(missing, ", "))
	}
	return nil
}

// urpmiItems lists the rpms of each --medium from its synthesis.
func (p *prefetcher) urpmiItems(c *cli.Context, want, seen map[string]bool) ([]prefetchItem, error) {
	var items []prefetchItem
	for _, m := range c.StringSlice("medium") {
		m = strings.TrimRight(m, "/")
		resp, err := p.get(c.Context, m+"/media_info/synthesis.hdlist.cz")
		if err != nil {
			return nil, fmt.Errorf("prefetch: the synthesis of medium %s: %w (is --medium the directory holding media_info/?)", m, err)
		}
		n := 0
		err = urpmi.ParseSynthesisCompressed(resp.Body, func(e urpmi.SynthEntry) error {
			n++
			if len(want) > 0 && !want[e.Name] {
				return nil
			}
			seen[e.Name] = true
			items = append(items, prefetchItem{name: e.Name, url: m + "/" + url.PathEscape(e.NEVRA+".rpm"), size: e.FileSize})
			return nil
		})
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("prefetch: %s/media_info/synthesis.hdlist.cz: %w", m, err)
		}
		fmt.Fprintf(c.App.Writer, "%s: %s listed\n", m, plural(n, "package", "packages"))
	}
	return items, nil
}

// aptItems lists the .debs of --url --suite from its verified root and
// Packages indexes.
func (p *prefetcher) aptItems(c *cli.Context, want, seen map[string]bool) ([]prefetchItem, error) {
	ctx := c.Context
	repo := strings.TrimRight(c.String("url"), "/")
	suite := c.String("suite")
	out := c.App.Writer

	// 1. The signed root, verified by the node.
	distURL := repo + "/dists/" + suite
	var rel *apt.Release
	for _, name := range []string{"InRelease", "Release"} {
		resp, err := p.get(ctx, distURL+"/"+name)
		if errors.Is(err, errPrefetchNotFound) && name == "InRelease" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("prefetch: the root of %s: %w", distURL, err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("prefetch: reading %s/%s: %w", distURL, name, err)
		}
		if rel, err = apt.ParseRoot(data); err != nil {
			return nil, fmt.Errorf("prefetch: %s/%s: %w", distURL, name, err)
		}
		if resp.Header.Get("X-Pkgswarm-Source") == "" {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s does not look like a pkgswarm node (no X-Pkgswarm-Source header)\n", p.server)
		}
		break
	}
	fmt.Fprintf(out, "%s: root dated %s\n", distURL, rel.Date.UTC().Format(time.RFC1123))

	// 2. The Packages index of each component.
	var items []prefetchItem
	files := map[string]bool{}
	for _, comp := range c.StringSlice("component") {
		n, err := p.packages(ctx, distURL, rel, comp+"/binary-"+c.String("arch")+"/Packages", func(pk *apt.Package) {
			if (len(want) > 0 && !want[pk.Name]) || files[pk.Filename] {
				return
			}
			files[pk.Filename] = true
			seen[pk.Name] = true
			items = append(items, prefetchItem{name: pk.Name, url: repo + "/" + escapeSegments(pk.Filename), size: pk.Size, sha256: slices.Clone(pk.SHA256)})
		})
		if err != nil {
			return nil, fmt.Errorf("prefetch: %w", err)
		}
		fmt.Fprintf(out, "%s: %s listed\n", comp, plural(n, "package", "packages"))
	}
	return items, nil
}

// confirm says how much items take and, when that is more than the node's
// cache bound, asks before going on (or wants --yes off a terminal): the
// cache would evict what it holds, and then what prefetch just fetched.
func (p *prefetcher) confirm(c *cli.Context, items []prefetchItem) error {
	total := itemsSize(items)
	_, st, err := fetchNodeStatus(c.Context, p.server)
	bound := int64(0)
	if err == nil {
		bound = st.Store.MaxBytes
	}
	boundText := "unbounded"
	if bound > 0 {
		boundText = "bound " + status.FormatBytes(bound)
	}
	fmt.Fprintf(c.App.Writer, "to fetch: %s, %s (the node's cache: %s)\n", plural(len(items), "package", "packages"), status.FormatBytes(total), boundText)
	if bound <= 0 || total <= bound || c.Bool("yes") {
		return nil
	}
	over := fmt.Sprintf("%s is more than the node's cache holds (%s): as new files arrive the oldest are evicted, "+
		"these packages among them", status.FormatBytes(total), status.FormatBytes(bound))
	if !stdinIsTerminal() {
		return exitf(1, "prefetch: %s; name the packages you need with --package, raise serve's --cache-size, or pass --yes to go on anyway", over)
	}
	fmt.Fprintf(c.App.ErrWriter, "%s.\nGo on? [y/N] ", over)
	answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return exitf(1, "prefetch: nothing fetched")
	}
	return nil
}

func itemsSize(items []prefetchItem) int64 {
	var total int64
	for _, it := range items {
		total += max(0, it.size)
	}
	return total
}

// stdinIsTerminal reports whether standard input is a terminal (prefetch
// asks only there).
func stdinIsTerminal() bool {
	// A character device is not enough: /dev/null is one.
	_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return err == nil
}

// fetchAll downloads items through the node, a few at a time, with a
// progress bar, and reports what failed. Interrupted (Ctrl-C), it stops
// starting downloads and says so on one line: the packages it did not get
// to are not failures.
func (p *prefetcher) fetchAll(c *cli.Context, items []prefetchItem) error {
	out := c.App.Writer
	total := itemsSize(items)
	bar := newProgressBar(c.App.ErrWriter, "prefetch", total, stderrIsTerminal())
	var mu sync.Mutex // protects failures, cached, done, doneBytes
	var failures []string
	var cached, done int
	var doneBytes int64
	ctx := c.Context
	g := new(errgroup.Group)
	g.SetLimit(max(1, c.Int("jobs")))
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			src, n, err := p.fetchPackage(ctx, it, bar)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && ctx.Err() != nil:
				// Cut by the interruption: not a failure of this package.
			case err != nil:
				failures = append(failures, err.Error())
			default:
				done++
				doneBytes += n
				if src == "cache" {
					cached++
				}
			}
			return nil
		})
	}
	g.Wait()
	bar.Finish()
	if ctx.Err() != nil {
		return exitf(130, "prefetch interrupted: %d of %s fetched (%s), %d failed; run it again to go on (what is cached is not fetched again)",
			done, plural(len(items), "package", "packages"), status.FormatBytes(doneBytes), len(failures))
	}
	for _, f := range failures {
		fmt.Fprintln(out, "failed:", f)
	}
	fmt.Fprintf(out, "prefetched %s (%s): %d were already cached, %d failed\n",
		plural(done, "package", "packages"), status.FormatBytes(doneBytes), cached, len(failures))
	if len(failures) > 0 {
		return exitf(1, "prefetch: %d of %d packages failed (listed above); run it again to retry them", len(failures), len(items))
	}
	return nil
}

// packages fetches the Packages index at rel path name (the first
// compression the root lists that the mirror has), checks it against the
// root and calls fn for each package. It returns how many it listed.
func (p *prefetcher) packages(ctx context.Context, distURL string, rel *apt.Release, name string, fn func(*apt.Package)) (int, error) {
	var lastErr error
	for _, ext := range []string{".xz", ".gz", ""} {
		sum, ok := rel.Files[name+ext]
		if !ok {
			continue
		}
		resp, err := p.get(ctx, distURL+"/"+name+ext)
		if errors.Is(err, errPrefetchNotFound) {
			lastErr = err
			continue
		}
		if err != nil {
			return 0, err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("reading %s/%s: %w", distURL, name+ext, err)
		}
		if got := sha256.Sum256(data); !bytes.Equal(got[:], sum.SHA256) {
			return 0, fmt.Errorf("%s/%s has sha256 %x, its root says %x", distURL, name+ext, got, sum.SHA256)
		}
		rc, err := decompress.NewReader(name+ext, bytes.NewReader(data))
		if err != nil {
			return 0, fmt.Errorf("%s/%s: %w", distURL, name+ext, err)
		}
		defer rc.Close()
		n := 0
		err = apt.ParsePackages(rc, func(pk *apt.Package) error { n++; fn(pk); return nil })
		if err != nil {
			return 0, fmt.Errorf("%s/%s: %w", distURL, name+ext, err)
		}
		return n, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("the root of %s lists no %s (check --component and --arch)", distURL, name)
	}
	return 0, lastErr
}

// fetchPackage downloads one package through the node, checks its digest
// and returns the source the node named (cache, lan, swarm, origin) and
// the bytes received.
func (p *prefetcher) fetchPackage(ctx context.Context, it prefetchItem, bar *progressBar) (string, int64, error) {
	resp, err := p.get(ctx, it.url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, progressWriter{bar}), resp.Body)
	if err != nil {
		return "", n, fmt.Errorf("%s: after %d bytes: %w", it.url, n, err)
	}
	if got := h.Sum(nil); it.sha256 != nil && !bytes.Equal(got, it.sha256) {
		return "", n, fmt.Errorf("%s: got sha256 %x, the index lists %x", it.url, got, it.sha256)
	}
	if it.size >= 0 && n != it.size {
		return "", n, fmt.Errorf("%s: got %d bytes, the index lists %d", it.url, n, it.size)
	}
	src, _, _ := strings.Cut(resp.Header.Get("X-Pkgswarm-Source"), ";")
	return strings.TrimSpace(src), n, nil
}

// escapeSegments escapes each segment of a relative path for a URL, as apt
// does: a pool file named "x_1%3a2_all.deb" (an epoch, as dpkg-name writes
// it) is requested as "x_1%253a2_all.deb".
func escapeSegments(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// progressWriter counts bytes written into a progress bar.
type progressWriter struct{ bar *progressBar }

func (w progressWriter) Write(b []byte) (int, error) { w.bar.Add(int64(len(b))); return len(b), nil }
