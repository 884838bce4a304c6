package discovery

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// TestStartupQueryAnsweredRightAfterAMulticast: a node that starts less than
// a second after another one (in the churn benchmark, a node restarted 0.3 s
// before two new ones) must still hear from every running node at once. The
// running nodes multicast their records in answer to the first node's query
// and may not multicast them again within a second (RFC 6762 §6), and the
// new node was not listening yet when they went out. Its start-up query asks
// for a unicast answer (QU, RFC 6762 §5.4), which the one-second rule does not
// hold back; with a plain (QM) query the new node heard nothing until its
// browse returned, after its first requests had gone to the LAN tier with an
// empty peer list (and to the swarm, 30 s for a 335 MB file instead of 15 s).
//
// Everything here is on loopback: the running node's responder (real handle,
// real socket) and the new node's port-5353 socket that the answer must reach.
func TestStartupQueryAnsweredRightAfterAMulticast(t *testing.T) {
	d, err := New(Config{NodeID: "0123abcdef", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	lc := net.ListenConfig{Control: reuseAddr}
	raw, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ips: testIPs, uc: ipv4.NewPacketConn(raw), raw: raw}
	r := &responder{d: d, zone: testZone(), links: []*link{l}, byIndex: map[int]*link{}, service: ServiceType + "." + mdnsDomain}
	defer r.close()

	// The new node's responder socket: mDNS answers go to port 5353.
	newNode, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:5353")
	if err != nil {
		t.Fatalf("this test needs 127.0.0.1:5353 (an mDNS responder on the host holding it without SO_REUSEADDR?): %v", err)
	}
	defer newNode.Close()
	src := newNode.LocalAddr().(*net.UDPAddr)

	// Another node's plain query, just now: the running node multicast its
	// records in answer (as handle's delayed send does, through the limiter).
	first, ok := r.zone.respond(serviceQuery(r.service), mdnsPort, l.ips)
	if !ok || !l.limit.filter(first.msg, time.Now()) {
		t.Fatal("the running node had nothing to multicast for the first query")
	}

	// The new node starts and sends its start-up query.
	pkt, err := startupQuery(r.service).Pack()
	if err != nil {
		t.Fatal(err)
	}
	r.handle(pkt, src, l, false)

	// The deadline only stops a test that would hang: on the old code no
	// answer is ever sent (the delayed multicast is held back by the limiter).
	newNode.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 9000)
	n, from, err := newNode.ReadFrom(buf)
	r.wg.Wait() // a delayed multicast send, if handle scheduled one
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the running node did not answer the new node's start-up query: its records went out by multicast less than a second before, so the new node hears of it only at its next browse")
	}
	if err != nil {
		t.Fatal(err)
	}
	var m dns.Msg
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("answer from %v: %v", from, err)
	}
	seen := sightings(&m, r.service)
	if len(seen) != 1 || seen[0].instance != "pkgswarm-0123abcd._pkgswarm._tcp.local." || seen[0].port != 3142 {
		t.Fatalf("the answer names %+v, want the running node (pkgswarm-0123abcd, port 3142): %v", seen, &m)
	}
}
