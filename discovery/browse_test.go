package discovery

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/mdns"
)

// TestBrowseReturnsWhileAQueryRuns: hashicorp/mdns's QueryContext returns
// only at its timeout (up to 1 s), even once its context has ended (it then
// only closes its sockets). browse waited for it, and Run's goodbye and
// serve's exit waited for browse: a node told to stop during a query (a
// query runs half of every BrowseInterval) took up to a second more to say
// goodbye and exit. browse must return as soon as its context ends, and
// what the abandoned query reports afterwards must not reach the peer set.
//
// The query is a fake that, like hashicorp's, ignores its context: it
// returns when the test releases it. synctest.Wait tells when every
// goroutine is blocked or gone, so the test waits for no clock.
func TestBrowseReturnsWhileAQueryRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, err := New(Config{NodeID: "0123abcdef", Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		_, lan, _ := net.ParseCIDR("10.77.1.0/24")
		release := make(chan struct{})
		var queries atomic.Int32
		r := &responder{d: d, links: []*link{{ifi: net.Interface{Index: 2, Name: "eth0"}, nets: []*net.IPNet{lan}}},
			service: ServiceType + "." + mdnsDomain,
			query: func(_ context.Context, p *mdns.QueryParam) error {
				n := queries.Add(1)
				if n > 1 {
					<-release // its timeout, whatever the context says
				}
				id := []string{"", "feed01", "feed02"}[min(n, 2)]
				p.Entries <- &mdns.ServiceEntry{Name: "pkgswarm-" + id + "._pkgswarm._tcp.local.", Host: "pkgswarm-" + id + ".local.",
					AddrV4: net.IPv4(10, 77, 1, byte(8+n)).To4(), Port: 3142, InfoFields: []string{"v=1", "id=" + id}}
				return nil
			}}
		known := func(id string) bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			_, ok := d.peers["mdns:"+id]
			return ok
		}

		ctx, cancel := context.WithCancel(context.Background())
		returned := make(chan struct{})
		go func() {
			r.browse(ctx)
			close(returned)
		}()
		var releaseOnce sync.Once
		unblock := func() { releaseOnce.Do(func() { close(release) }) }
		defer func() { // on every way out: no goroutine of the bubble left blocked
			cancel()
			unblock()
			<-returned
		}()
		// The first query answers at once; the second, a BrowseInterval
		// later, is still running when the node is told to stop.
		synctest.Wait()
		if !known("feed01") {
			t.Fatal("the first query's answer did not reach the peer set")
		}
		time.Sleep(d.cfg.BrowseInterval)
		synctest.Wait()
		if n := queries.Load(); n != 2 {
			t.Fatalf("browse ran %d queries; want 2 (the second one running)", n)
		}
		cancel()
		synctest.Wait()
		select {
		case <-returned:
		default:
			t.Fatal("browse did not return when its context ended: it waits for the query in flight, " +
				"which hashicorp/mdns ends only at its timeout (up to 1 s), and Run's goodbye and serve's exit wait for browse")
		}
		unblock()
		<-returned
		synctest.Wait() // the abandoned query has returned and done what it does then
		if known("feed02") {
			t.Error("the query left running when browse returned handed its answer on when it ended: it reached the peer set after Run could have returned")
		}
	})
}
