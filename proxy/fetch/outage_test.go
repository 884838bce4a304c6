package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/fetchtest"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// outageOrigin serves the file, dies half way through the first answer, and
// then cannot be reached (a dial error) for its next down answers: the
// uplink cut for a while. It records the offsets asked.
type outageOrigin struct {
	content []byte
	down    int
	fetchtest.OffsetLog
}

func (o *outageOrigin) Name() string { return "origin" }

func (o *outageOrigin) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	switch n := o.Add(a.Offset); {
	case n == 1:
		body := fetchtest.FaultyBytes(ctx, o.content, fetchtest.DieAt)
		return &fetch.Body{ReadCloser: body, Size: int64(len(o.content)), Peer: a.URL}, nil
	case n <= 1+o.down:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: network is unreachable")}
	}
	return &fetch.Body{ReadCloser: io.NopCloser(bytes.NewReader(o.content[a.Offset:])), Start: a.Offset,
		Size: int64(len(o.content)), Peer: a.URL}, nil
}

// An origin that dies mid-file and stays unreachable for a few seconds (an
// uplink cut) does not lose the download: the pipeline tries the sources
// again, backing off, and resumes where the bytes stopped, so the origin
// sends the file once. Before, the download failed and the bytes held were
// dropped: the client's retry fetched the file again from its first byte.
func TestOriginOutageKeepsTheDownload(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("outage ", 40000))
	o := &outageOrigin{content: content, down: 2}
	p := newPipeline(t, fetch.Config{Origin: o, OutageWait: 20 * time.Second})
	res, err := p.run(t, &fetch.Request{URL: "http://origin.test/pool/f.deb", Expect: expectOf(content)})
	if err != nil {
		t.Fatalf("the download failed through an outage of two tries: %v (origin asked at offsets %v)", err, o.Offsets())
	}
	if got := res.Flight.Digest(); got != store.Digest(expectOf(content).SHA256) {
		t.Fatalf("committed %s", got)
	}
	offs := o.Offsets()
	if len(offs) != 4 || offs[0] != 0 || offs[3] != int64(len(content)/2) {
		t.Fatalf("origin asked at offsets %v; want 0, then the half held (%d) on every later try", offs, len(content)/2)
	}
	if got := p.obs.FetchedFrom("origin"); got != int64(len(content)) {
		t.Errorf("origin sent %d bytes in all; want the file once (%d)", got, len(content))
	}
}

// An outage longer than OutageWait fails the download with the origin's
// error, and a file the origin does not have is not retried at all.
func TestOriginOutageIsBounded(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("bounded ", 40000))
	o := &outageOrigin{content: content, down: 1000}
	p := newPipeline(t, fetch.Config{Origin: o, OutageWait: 1500 * time.Millisecond})
	began := time.Now()
	_, err := p.run(t, &fetch.Request{URL: "http://origin.test/pool/f.deb", Expect: expectOf(content)})
	var ne net.Error
	if !errors.As(err, &ne) {
		t.Fatalf("err %v; want the origin's network error", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("gave up after %v; OutageWait is 1.5 s", took)
	}
	if n := len(o.Offsets()); n < 2 || n > 4 {
		t.Errorf("origin asked %d times in a 1.5 s outage wait (backing off from 0.5 s); want 2 to 4", n)
	}

	missing := &countingNotFound{}
	p = newPipeline(t, fetch.Config{Origin: missing, OutageWait: 20 * time.Second})
	if _, err := p.run(t, &fetch.Request{URL: "http://origin.test/pool/g.deb", Expect: expectOf(content)}); !fetch.IsNotFound(err) {
		t.Fatalf("err %v; want not found", err)
	}
	if missing.n != 1 {
		t.Errorf("a file the origin does not have was asked %d times; want 1", missing.n)
	}
}

type countingNotFound struct{ n int }

func (c *countingNotFound) Name() string { return "origin" }
func (c *countingNotFound) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	c.n++
	return nil, fmt.Errorf("%s: 404 Not Found: %w", a.URL, fetch.ErrNotFound)
}

// stallOnce is a LAN tier whose peer's own download stalls (its origin
// link cut) on the first read, half way, and flows again on the next: the
// peer resumed its download. It records the offsets asked.
type stallOnce struct {
	content []byte
	fetchtest.OffsetLog
}

func (s *stallOnce) Name() string { return "lan" }

func (s *stallOnce) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	if s.Add(a.Offset) == 1 {
		return &fetch.Body{ReadCloser: fetchtest.FaultyBytes(ctx, s.content, fetchtest.Stall), Size: int64(len(s.content)), Peer: "leader"}, nil
	}
	return &fetch.Body{ReadCloser: io.NopCloser(bytes.NewReader(s.content[a.Offset:])), Start: a.Offset,
		Size: int64(len(s.content)), Peer: "leader"}, nil
}

// A node reading a LAN peer's download in flight, when that download stalls
// (the office's uplink cut), asks its LAN peers once more before it goes to
// the origin: the peer resumes its own download, and the office still pays
// one origin copy. Before, the reader went straight on to the origin, which
// sent the rest of the file a second time (issue 14's churn run: 1.76
// copies).
func TestSiteStallAsksThePeersAgainBeforeTheOrigin(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("follower ", 40000))
	site := &stallOnce{content: content}
	origin := &fetchtest.Static{Label: "origin", Content: content}
	p := newPipeline(t, fetch.Config{Site: []fetch.Source{site}, Origin: origin})
	if _, err := p.run(t, &fetch.Request{URL: "http://origin.test/pool/f.deb", Expect: expectOf(content), Peers: true}); err != nil {
		t.Fatal(err)
	}
	if offs := site.Offsets(); len(offs) != 2 || offs[1] != int64(len(content)/2) {
		t.Errorf("LAN tier asked at offsets %v; want 0, then again at the half it stalled at", offs)
	}
	if got := origin.Offsets(); len(got) != 0 {
		t.Errorf("origin asked at offsets %v; want never (the peer's download resumed)", got)
	}
}
