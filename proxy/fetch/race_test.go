package fetch_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/fetchtest"
)

// A download that commits and ends between a request's look into the store
// and its look for a running download is not started again: the request is
// answered from the store. Before, the second look found no download and
// started one, and the origin served the file twice (seen once in fifteen
// cold runs of the single-node benchmark).
func TestGetDuringACommitStartsNoSecondDownload(t *testing.T) {
	content := []byte(strings.Repeat("one download per file ", 500))
	origin := &fetchtest.Static{Label: "origin", Content: content}
	gate := &gatedSource{Source: origin, open: make(chan struct{})}
	p := newPipeline(t, fetch.Config{Origin: gate})
	req := &fetch.Request{URL: "http://o.test/pool/a.deb", Expect: expectOf(content)}
	first, err := p.f.Get(context.Background(), req)
	if err != nil || first.Flight == nil {
		t.Fatalf("first Get: %+v, %v", first, err)
	}
	// The second request has looked into the store (not there yet); the
	// first download then finishes before it looks for running downloads.
	fetch.SetAfterLookup(p.f, func() {
		close(gate.open)
		<-first.Flight.Done()
	})
	second, err := p.f.Get(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Flight.Err(); err != nil {
		t.Fatal(err)
	}
	if second.Flight != nil {
		<-second.Flight.Done()
	}
	if n := len(origin.Offsets()); n != 1 {
		t.Fatalf("the origin was asked %d times for one file", n)
	}
	if second.Flight != nil || second.Digest != first.Flight.Digest() {
		t.Fatalf("second Get: %+v; want the stored blob %s", second, first.Flight.Digest())
	}
}
