package origin

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

// pacer lets rate bytes per second through, shared by whoever holds it.
type pacer struct {
	rate float64
	mu   sync.Mutex
	next time.Time // when the bytes let through so far are due
}

func (p *pacer) wait(n int) {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	due := p.next
	p.mu.Unlock()
	time.Sleep(time.Until(due))
}

// pacedOrigin answers in order on every connection, its bytes paced by
// pacerFor(connection number).
func pacedOrigin(t *testing.T, files map[string][]byte, pacerFor func(n int) *pacer) *rawOrigin {
	return newRawOrigin(t, files, func(n int, rc *rawConn) {
		p := pacerFor(n)
		for i := 0; ; i++ {
			req := rc.wait(i)
			if req == nil {
				return
			}
			answer := rc.o.answer(req, "HTTP/1.1")
			rc.mu.Lock()
			rc.answered++
			rc.mu.Unlock()
			for len(answer) > 0 {
				chunk := answer[:min(len(answer), 16<<10)]
				answer = answer[len(chunk):]
				p.wait(len(chunk))
				if _, err := rc.nc.Write([]byte(chunk)); err != nil {
					return
				}
			}
		}
	})
}

// aptLike fetches paths in order with up to window requests outstanding,
// as apt does with its pipeline depth.
func aptLike(t *testing.T, c *Client, o *rawOrigin, paths []string, window int) {
	t.Helper()
	sem := make(chan struct{}, window)
	var wg sync.WaitGroup
	errs := make(chan error, len(paths))
	for _, p := range paths {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, data, err := get(t, c, checked(o.url(p), o.files[p]))
			if err == nil && string(data) != string(o.files[p]) {
				err = fmt.Errorf("got %d bytes, not the file's %d", len(data), len(o.files[p]))
			}
			if err != nil {
				errs <- fmt.Errorf("%s: %w", p, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// probed fetches 130 files of 64 KiB from an origin whose connection n is
// paced by pacerFor(n), as apt would over a client of four connections, and
// returns the client, the origin and the host's decided probe.
func probed(t *testing.T, pacerFor func(n int) *pacer) (*Client, *rawOrigin, spreadProbe) {
	t.Helper()
	o := pacedOrigin(t, rawFiles(130, 64<<10), pacerFor)
	cfg := loopback(o.port)
	cfg.MaxConnsPerHost = 4
	c := newClient(t, cfg)
	aptLike(t, c, o, paths(0, 130), DefaultPipelineDepth)
	c.pipe.mu.Lock()
	var p spreadProbe
	h := c.pipe.hosts["127.0.0.1:"+strconv.Itoa(o.port)]
	if h != nil {
		p = h.probe
	}
	c.pipe.mu.Unlock()
	if p.phase != probeDone {
		t.Fatalf("the probe did not decide after 8 MB (%+v)", p)
	}
	t.Logf("in order %.1f MB/s, spread %.1f MB/s", p.oneRate/1e6, p.manyRate/1e6)
	return c, o, p
}

// testPace is the paced origin's rate (bytes/s), of the link or of each
// connection. It stays well below what a loaded race-detector run moves on
// loopback (2.3–4.3 MB/s once in CI at 4 MB/s): a client starved of CPU
// measured its one connection below the link and spread over a shared one.
const testPace = 2e6

// Connections that share one bottleneck (the node's uplink): spreading
// requests over them gains nothing, and delays the file the client waits for
// next behind the ones after it. After the probe the host's requests go in
// order on one connection, as apt's own would.
func TestSharedLinkKeepsRequestsInOrder(t *testing.T) {
	t.Parallel()
	link := &pacer{rate: testPace}
	c, o, p := probed(t, func(int) *pacer { return link })
	if p.spread {
		t.Fatal("requests are spread over connections that share one link")
	}
	// Decided: the next requests go on one connection, in order.
	// (The probe's connections are closed first: a new one takes them.)
	c.pipe.mu.Lock()
	h := c.pipe.hosts["127.0.0.1:"+strconv.Itoa(o.port)]
	for _, pc := range slices.Clone(h.conns) {
		pc.dieLocked(nil)
	}
	c.pipe.hosts[h.key] = h // kept with its decision, though it has no connection
	c.pipe.mu.Unlock()
	before := o.connections()
	aptLike(t, c, o, paths(0, 30), DefaultPipelineDepth)
	if n := o.connections() - before; n != 1 {
		t.Errorf("in order, 30 requests took %d new connections, want 1", n)
	}
}

// An origin that paces each connection (as many mirrors and CDNs do):
// spread over several connections the host gives several times one's rate,
// and stays spread.
func TestPacedConnectionsSpread(t *testing.T) {
	t.Parallel()
	_, o, p := probed(t, func(int) *pacer { return &pacer{rate: testPace} })
	if !p.spread {
		t.Fatal("requests stay on one connection of an origin that paces each")
	}
	if k := o.connections(); k < 2 {
		t.Errorf("%d connection(s) to an origin that paces each", k)
	}
}

// lineOrigin serves /f0 to prove its first connection, then holds that
// connection's further answers until release is called; every other
// connection is answered in order at once. Release is called at the end of
// the test at the latest: the origin's clean-up waits for every
// connection's handler, and a test that failed before it released the
// answers would otherwise hang there.
func lineOrigin(t *testing.T) (o *rawOrigin, release func()) {
	files := rawFiles(3, 1000)
	files["/big"] = make([]byte, maxAhead+1<<20)
	files["/mid"] = make([]byte, 3<<20)
	files["/mid2"] = make([]byte, 2<<20)
	held := make(chan struct{})
	release = sync.OnceFunc(func() { close(held) })
	o = newRawOrigin(t, files, func(n int, rc *rawConn) {
		if n != 1 {
			rc.serveInOrder(0)
			return
		}
		rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
		<-held
		rc.serveInOrder(1)
	})
	t.Cleanup(release) // registered after the origin's: runs before it
	return o, release
}

// fetchLine fetches path as asked on line l, in the background.
func fetchLine(t *testing.T, c *Client, o *rawOrigin, path string, l fetch.Line) <-chan error {
	done := make(chan error, 1)
	go func() {
		a := checked(o.url(path), o.files[path])
		a.Request.Line = l
		_, data, err := get(t, c, a)
		if err == nil && len(data) != len(o.files[path]) {
			err = fmt.Errorf("%d bytes, want %d", len(data), len(o.files[path]))
		}
		if err != nil {
			err = fmt.Errorf("%s (line %+v): %w", path, l, err)
		}
		done <- err
	}()
	return done
}

// In order on a shared link, a request queued behind a large file that
// its own client asked for earlier on the same connection goes behind it,
// as apt's own pipeline would: its client reads the answers in order, so
// it could not have it sooner, and fetched on a connection of its own it
// would only be done early — leaving the link idle for a round trip at the
// large file's end, while the client sends its next requests. A request of
// another client is not held behind the large file, nor behind another
// client's request queued after its own.
func TestLargeFileKeepsItsClientsNextBehindIt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		queued    []lineReq // on the first connection, in order, its answers held
		next      fetch.Line
		wantConns int
	}{
		{"same client", []lineReq{{"/big", fetch.Line{Conn: 7, Seq: 1}}}, fetch.Line{Conn: 7, Seq: 2}, 1},
		{"another client", []lineReq{{"/big", fetch.Line{Conn: 7, Seq: 1}}}, fetch.Line{Conn: 8, Seq: 2}, 2},
		{"no line", []lineReq{{"/big", fetch.Line{}}}, fetch.Line{}, 2},
		{"asked before the large file", []lineReq{{"/big", fetch.Line{Conn: 7, Seq: 2}}}, fetch.Line{Conn: 7, Seq: 1}, 2},
		// The client's requests may reach the pool out of their order.
		{"behind its own later request", []lineReq{{"/big", fetch.Line{Conn: 7, Seq: 1}}, {"/f2", fetch.Line{Conn: 7, Seq: 3}}}, fetch.Line{Conn: 7, Seq: 2}, 1},
		{"behind another client's request", []lineReq{{"/mid", fetch.Line{Conn: 7, Seq: 1}}, {"/mid2", fetch.Line{Conn: 8, Seq: 1}}}, fetch.Line{Conn: 7, Seq: 2}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := queueOnLine(t, nil, tc.queued, tc.next); got != tc.wantConns {
				t.Errorf("/f1 (line %+v) asked behind %v: %d connections, want %d", tc.next, tc.queued, got, tc.wantConns)
			}
		})
	}
}

// lineReq is a request of a client's line.
type lineReq struct {
	path string
	line fetch.Line
}

// queueOnLine proves a connection to a lineOrigin, calls setup (when not
// nil) with the host's state under the pool's lock, queues the requests
// queued on that connection (its answers held), then asks /f1 on line next,
// releases the answers, and returns how many connections the origin saw.
// Every wait is bounded by lineWait; one that runs out, or a queued request
// that does not go on the first connection, fails the test.
func queueOnLine(t *testing.T, setup func(h *host), queued []lineReq, next fetch.Line) int {
	t.Helper()
	o, release := lineOrigin(t)
	cfg := loopback(o.port)
	cfg.MaxConnsPerHost = 4
	c := newClient(t, cfg)
	proven(t, c, o)
	if setup != nil {
		c.pipe.mu.Lock()
		setup(c.pipe.hosts["127.0.0.1:"+strconv.Itoa(o.port)])
		c.pipe.mu.Unlock()
	}
	var done []<-chan error
	for i, q := range queued {
		done = append(done, fetchLine(t, c, o, q.path, q.line))
		waitFor(t, fmt.Sprintf("%s (line %+v) at the origin", q.path, q.line), func() bool {
			return o.requests(1) >= 2+i || o.connections() >= 2
		})
		if o.requests(1) < 2+i {
			t.Fatalf("%s (line %+v) went to a connection of its own (%d connections), not on the first one behind %v",
				q.path, q.line, o.connections(), queued[:i])
		}
	}
	done = append(done, fetchLine(t, c, o, "/f1", next))
	waitFor(t, fmt.Sprintf("the next request, /f1 (line %+v), at the origin", next), func() bool {
		return o.requests(1) >= 2+len(queued) || o.connections() >= 2
	})
	release()
	answered := time.After(lineWait)
	for i, ch := range done {
		name := "/f1"
		if i < len(queued) {
			name = queued[i].path
		}
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-answered:
			t.Fatalf("%s was not answered within %v of the origin's release (%d connections)", name, lineWait, o.connections())
		}
	}
	return o.connections()
}

// lineWait bounds each of queueOnLine's waits: what it waits for takes
// milliseconds.
const lineWait = 10 * time.Second

// waitFor polls cond for up to lineWait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(lineWait); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, lineWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// In the probe's spread phase, from an origin a round trip of 10 ms or more
// away, a request its client pipelined behind a large file of its own goes
// behind that file, as in order; behind a small file of its own, or another
// client's large one, or from an origin nearby, it still goes to a
// connection of its own, so that the probe measures two. Spread behind a
// large file, such requests were done while the file still came, held the
// client's pipeline slots, and the link idled for a round trip at the file's
// end (the single-node benchmark from 40 ms away: 25–80 ms per cold run,
// docs/benchmarks.md).
func TestProbeSpreadKeepsAClientsNextBehindItsLargeFile(t *testing.T) {
	t.Parallel()
	const far, near = 40 * time.Millisecond, time.Millisecond
	for _, tc := range []struct {
		name      string
		rtt       time.Duration // the host's round trip, as measured
		ahead     string        // on the first connection, its answer held
		line      fetch.Line    // the request's after it
		wantConns int
	}{
		{"its own large file ahead", far, "/mid", fetch.Line{Conn: 7, Seq: 2}, 1},
		{"its own small file ahead", far, "/f2", fetch.Line{Conn: 7, Seq: 2}, 2},
		{"another client's large file ahead", far, "/mid", fetch.Line{Conn: 8, Seq: 2}, 2},
		{"its own large file ahead, origin nearby", near, "/mid", fetch.Line{Conn: 7, Seq: 2}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			setup := func(h *host) {
				h.probe = spreadProbe{phase: probeMany, bytes0: h.read.Load()}
				h.rtt = tc.rtt
			}
			queued := []lineReq{{tc.ahead, fetch.Line{Conn: 7, Seq: 1}}}
			if got := queueOnLine(t, setup, queued, tc.line); got != tc.wantConns {
				t.Errorf("/f1 (line %+v) asked behind %v: %d connections, want %d", tc.line, queued, got, tc.wantConns)
			}
		})
	}
}
