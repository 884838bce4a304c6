package rig

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/node"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/origin"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// Options configures a node.
type Options struct {
	// Dir is the store directory; "" means a new temporary directory.
	Dir string
	// MaxBytes bounds the store (0: unbounded).
	MaxBytes int64
	// OriginURLs are the origins the node may fetch from: their ports are
	// allowed, and loopback origins too.
	OriginURLs []string
	// Config, if set, adjusts the node's configuration before it starts.
	Config func(*node.Config)
	// Wrap, if set, wraps the node's handler (e.g. to record requests).
	Wrap func(http.Handler) http.Handler
	// Strict keeps the default egress policy (loopback origins refused).
	Strict bool
	// Quiet discards the node's logs (benchmarks).
	Quiet bool
}

// Node is a running node.
type Node struct {
	*node.Node
	T    testing.TB
	HTTP *httptest.Server
	// URL is the node's base URL, "http://127.0.0.1:PORT".
	URL  string
	Dir  string
	Logs *SyncBuffer

	opts Options
}

// Start starts a node; it stops when the test ends.
func Start(t testing.TB, o Options) *Node {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	n := &Node{T: t, Dir: o.Dir, opts: o}
	n.start()
	t.Cleanup(n.Stop)
	return n
}

func (n *Node) start() {
	t := n.T
	t.Helper()
	n.Logs = &SyncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(n.Logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	if n.opts.Quiet {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := store.Open(store.Options{Dir: n.Dir, MaxBytes: n.opts.MaxBytes, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Config{Store: st, Logger: log, NodeID: "test", Version: "test", Egress: origin.Egress{AllowLoopback: !n.opts.Strict}}
	for _, u := range n.opts.OriginURLs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(pu.Port())
		if port == 0 {
			port = 80
			if pu.Scheme == "https" {
				port = 443
			}
		}
		cfg.AllowPorts = append(cfg.AllowPorts, port)
	}
	if n.opts.Config != nil {
		n.opts.Config(&cfg)
	}
	nd, err := node.New(cfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	n.Node = nd
	var h http.Handler = nd.Handler
	if n.opts.Wrap != nil {
		h = n.opts.Wrap(h)
	}
	n.HTTP = httptest.NewUnstartedServer(h)
	n.HTTP.Config.ConnContext = nd.Proxy.ConnContext
	n.HTTP.Listener = nd.Proxy.Readahead(n.HTTP.Listener)
	n.HTTP.Start()
	n.URL = n.HTTP.URL
}

// Stop stops the node and closes its store (the directory stays).
func (n *Node) Stop() {
	if n.HTTP == nil {
		return
	}
	n.HTTP.Close()
	n.Node.Close()
	n.Store.Close()
	n.HTTP = nil
}

// Restart stops the node and starts it again on the same store directory.
func (n *Node) Restart() {
	n.Stop()
	n.start()
}

// ProxyClient is an HTTP client using the node as its forward proxy.
func (n *Node) ProxyClient() *http.Client {
	pu, _ := url.Parse(n.URL)
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableCompression: true}, Timeout: 2 * time.Minute}
}

// Get fetches an origin URL through the node in forward mode.
func (n *Node) Get(u string, hdr http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := n.ProxyClient().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// PrefixURL is an origin URL in the node's prefix form.
func (n *Node) PrefixURL(originURL string) string {
	if rest, ok := strings.CutPrefix(originURL, "https://"); ok {
		return n.URL + "/https/" + rest
	}
	return n.URL + "/" + strings.TrimPrefix(originURL, "http://")
}

// State fetches /_pkgswarm/status.
func (n *Node) State() status.Status {
	n.T.Helper()
	resp, err := http.Get(n.URL + "/_pkgswarm/status")
	if err != nil {
		n.T.Fatal(err)
	}
	defer resp.Body.Close()
	var st status.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		n.T.Fatal(err)
	}
	return st
}

// Eventually polls cond for up to 10 s. A client is answered as soon as a
// download's digest matches; the commit into the store (rename, index record, the
// shareable mark) may finish a moment later.
func Eventually(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (the logger).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testWriter sends log lines to t.Log only when the test is verbose, so
// failures keep their context without drowning normal runs.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
