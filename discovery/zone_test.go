package discovery

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func testZone() *zone {
	return newZone("pkgswarm-0123abcd", "pkgswarm-0123abcd.local.", 3142,
		[]string{ServiceType, AptProxyServiceType, AcngServiceType}, []string{"v=1", "id=0123abcdef"})
}

var testIPs = []net.IP{net.ParseIP("10.77.1.2").To4(), net.ParseIP("fd00::2")}

func question(name string, qtype uint16, qu bool) dns.Question {
	q := dns.Question{Name: name, Qtype: qtype, Qclass: dns.ClassINET}
	if qu {
		q.Qclass |= unicastResponse
	}
	return q
}

func queryMsg(id uint16, qs ...dns.Question) *dns.Msg {
	return &dns.Msg{MsgHdr: dns.MsgHdr{Id: id}, Question: qs}
}

// summary renders records as "TYPE name -> data ttl flush" lines, sorted.
func summary(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		flush := ""
		if h.Class&cacheFlush != 0 {
			flush = " flush"
		}
		var data string
		switch rr := rr.(type) {
		case *dns.PTR:
			data = rr.Ptr
		case *dns.SRV:
			data = rr.Target + ":" + itoa(int(rr.Port))
		case *dns.TXT:
			data = strings.Join(rr.Txt, ",")
		case *dns.A:
			data = rr.A.String()
		case *dns.AAAA:
			data = rr.AAAA.String()
		}
		out = append(out, dns.TypeToString[h.Rrtype]+" "+h.Name+" -> "+data+" ttl="+itoa(int(h.Ttl))+flush)
	}
	slices.Sort(out)
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestRespond(t *testing.T) {
	t.Parallel()
	inst := "pkgswarm-0123abcd._apt_proxy._tcp.local."
	host := "pkgswarm-0123abcd.local."
	tests := []struct {
		name        string
		query       *dns.Msg
		srcPort     int
		wantNone    bool
		wantUnicast bool
		wantID      uint16
		wantQ       bool // question echoed
		answer      []string
		extra       []string
	}{
		{
			name:    "multicast PTR query gets PTR plus SRV, TXT and addresses",
			query:   queryMsg(7, question("_apt_proxy._tcp.local.", dns.TypePTR, false)),
			srcPort: 5353,
			answer:  []string{"PTR _apt_proxy._tcp.local. -> " + inst + " ttl=120"},
			extra: []string{
				"A " + host + " -> 10.77.1.2 ttl=120 flush",
				"AAAA " + host + " -> fd00::2 ttl=120 flush",
				"SRV " + inst + " -> " + host + ":3142 ttl=120 flush",
				"TXT " + inst + " -> v=1,id=0123abcdef ttl=120 flush",
			},
		},
		{
			name:        "legacy unicast: ID and question echoed, TTL 10, no cache-flush",
			query:       queryMsg(4242, question("_apt_proxy._tcp.local.", dns.TypePTR, false)),
			srcPort:     40000,
			wantUnicast: true,
			wantID:      4242,
			wantQ:       true,
			answer:      []string{"PTR _apt_proxy._tcp.local. -> " + inst + " ttl=10"},
			extra: []string{
				"A " + host + " -> 10.77.1.2 ttl=10",
				"AAAA " + host + " -> fd00::2 ttl=10",
				"SRV " + inst + " -> " + host + ":3142 ttl=10",
				"TXT " + inst + " -> v=1,id=0123abcdef ttl=10",
			},
		},
		{
			name:    "A query for the SRV target host, names are case-insensitive",
			query:   queryMsg(0, question("PKGSWARM-0123ABCD.local.", dns.TypeA, false)),
			srcPort: 5353,
			answer:  []string{"A " + host + " -> 10.77.1.2 ttl=120 flush"},
		},
		{
			name:        "QU question gets a unicast reply",
			query:       queryMsg(0, question(inst, dns.TypeSRV, true)),
			srcPort:     5353,
			wantUnicast: true,
			answer:      []string{"SRV " + inst + " -> " + host + ":3142 ttl=120 flush"},
			extra: []string{
				"A " + host + " -> 10.77.1.2 ttl=120 flush",
				"AAAA " + host + " -> fd00::2 ttl=120 flush",
			},
		},
		{
			name:    "ANY on the instance",
			query:   queryMsg(0, question("pkgswarm-0123abcd._pkgswarm._tcp.local.", dns.TypeANY, false)),
			srcPort: 5353,
			answer: []string{
				"SRV pkgswarm-0123abcd._pkgswarm._tcp.local. -> " + host + ":3142 ttl=120 flush",
				"TXT pkgswarm-0123abcd._pkgswarm._tcp.local. -> v=1,id=0123abcdef ttl=120 flush",
			},
			extra: []string{
				"A " + host + " -> 10.77.1.2 ttl=120 flush",
				"AAAA " + host + " -> fd00::2 ttl=120 flush",
			},
		},
		{
			name:    "service enumeration",
			query:   queryMsg(0, question(servicesEnum, dns.TypePTR, false)),
			srcPort: 5353,
			answer: []string{
				"PTR " + servicesEnum + " -> _apt-proxy._tcp.local. ttl=120",
				"PTR " + servicesEnum + " -> _apt_proxy._tcp.local. ttl=120",
				"PTR " + servicesEnum + " -> _pkgswarm._tcp.local. ttl=120",
			},
		},
		{
			name: "known answer with enough TTL suppresses the answer",
			query: func() *dns.Msg {
				m := queryMsg(0, question("_apt_proxy._tcp.local.", dns.TypePTR, false))
				m.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: "_apt_proxy._tcp.local.", Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 100}, Ptr: inst}}
				return m
			}(),
			srcPort:  5353,
			wantNone: true,
		},
		{
			name: "known answer with little TTL left does not suppress",
			query: func() *dns.Msg {
				m := queryMsg(0, question("_apt_proxy._tcp.local.", dns.TypePTR, false))
				m.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: "_apt_proxy._tcp.local.", Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 30}, Ptr: inst}}
				return m
			}(),
			srcPort: 5353,
			answer:  []string{"PTR _apt_proxy._tcp.local. -> " + inst + " ttl=120"},
			extra: []string{
				"A " + host + " -> 10.77.1.2 ttl=120 flush",
				"AAAA " + host + " -> fd00::2 ttl=120 flush",
				"SRV " + inst + " -> " + host + ":3142 ttl=120 flush",
				"TXT " + inst + " -> v=1,id=0123abcdef ttl=120 flush",
			},
		},
		{
			name:     "other service",
			query:    queryMsg(0, question("_http._tcp.local.", dns.TypePTR, false)),
			srcPort:  5353,
			wantNone: true,
		},
		{
			name:     "wrong type for a known name",
			query:    queryMsg(0, question(host, dns.TypeMX, false)),
			srcPort:  5353,
			wantNone: true,
		},
		{
			name: "a response is not answered",
			query: func() *dns.Msg {
				m := queryMsg(0, question("_apt_proxy._tcp.local.", dns.TypePTR, false))
				m.Response = true
				return m
			}(),
			srcPort:  5353,
			wantNone: true,
		},
		{
			name: "non-zero opcode is ignored",
			query: func() *dns.Msg {
				m := queryMsg(0, question("_apt_proxy._tcp.local.", dns.TypePTR, false))
				m.Opcode = dns.OpcodeUpdate
				return m
			}(),
			srcPort:  5353,
			wantNone: true,
		},
	}
	z := testZone()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep, ok := z.respond(tc.query, tc.srcPort, testIPs)
			if tc.wantNone {
				if ok {
					t.Fatalf("got a reply, want none:\n%v", rep.msg)
				}
				return
			}
			if !ok {
				t.Fatal("no reply")
			}
			m := rep.msg
			if rep.unicast != tc.wantUnicast || m.Id != tc.wantID || !m.Response || !m.Authoritative {
				t.Errorf("unicast=%v id=%d response=%v aa=%v; want unicast=%v id=%d, QR and AA set",
					rep.unicast, m.Id, m.Response, m.Authoritative, tc.wantUnicast, tc.wantID)
			}
			if tc.wantQ != (len(m.Question) > 0) {
				t.Errorf("question section %v; want echoed=%v", m.Question, tc.wantQ)
			}
			if got := summary(m.Answer); !slices.Equal(got, tc.answer) {
				t.Errorf("answers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.answer, "\n"))
			}
			if got := summary(m.Extra); !slices.Equal(got, tc.extra) {
				t.Errorf("additional:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.extra, "\n"))
			}
			// It must survive the wire.
			b, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			var back dns.Msg
			if err := back.Unpack(b); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRespondLegacyTruncates(t *testing.T) {
	t.Parallel()
	var txt []string
	for i := 0; i < 8; i++ {
		txt = append(txt, "k"+itoa(i)+"="+strings.Repeat("x", 100))
	}
	z := newZone("big", "big.local.", 80, []string{ServiceType}, txt)
	q := queryMsg(9, question("_pkgswarm._tcp.local.", dns.TypePTR, false))
	rep, ok := z.respond(q, 1234, testIPs)
	if !ok {
		t.Fatal("no reply")
	}
	b, err := rep.msg.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > dns.MinMsgSize {
		t.Fatalf("legacy reply without EDNS is %d bytes, more than %d", len(b), dns.MinMsgSize)
	}
	if len(rep.msg.Answer) != 1 {
		t.Fatalf("the PTR answer was dropped: %v", rep.msg)
	}
}

func TestAnnouncementAndSightings(t *testing.T) {
	t.Parallel()
	z := testZone()
	svc := ServiceType + "." + mdnsDomain
	tests := []struct {
		name    string
		goodbye bool
		want    sighting
	}{
		{"announce", false, sighting{instance: "pkgswarm-0123abcd." + svc, host: "pkgswarm-0123abcd.local.", port: 3142,
			ips: testIPs, txt: []string{"v=1", "id=0123abcdef"}}},
		{"goodbye", true, sighting{instance: "pkgswarm-0123abcd." + svc, goodbye: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := z.announcement(testIPs, tc.goodbye)
			if len(m.Question) != 0 || m.Id != 0 || !m.Response {
				t.Fatalf("announcement header: %v", m.MsgHdr)
			}
			for _, rr := range m.Answer {
				if tc.goodbye && rr.Header().Ttl != 0 {
					t.Errorf("goodbye record with TTL %d: %v", rr.Header().Ttl, rr)
				}
			}
			b, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			var back dns.Msg
			if err := back.Unpack(b); err != nil {
				t.Fatal(err)
			}
			got := sightings(&back, svc)
			if len(got) != 1 {
				t.Fatalf("sightings = %+v, want one", got)
			}
			s := got[0]
			if s.instance != tc.want.instance || s.host != tc.want.host || s.port != tc.want.port && !tc.goodbye ||
				s.goodbye != tc.want.goodbye || !slices.Equal(s.txt, tc.want.txt) || len(s.ips) != len(tc.want.ips) {
				t.Fatalf("sighting = %+v\nwant %+v", s, tc.want)
			}
			for i := range s.ips {
				if !s.ips[i].Equal(tc.want.ips[i]) {
					t.Fatalf("ips = %v, want %v", s.ips, tc.want.ips)
				}
			}
		})
	}
}

func TestSightingsIgnoresIncompleteAndForeign(t *testing.T) {
	t.Parallel()
	svc := ServiceType + "." + mdnsDomain
	inst := "n1." + svc
	hdr := func(name string, t uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	tests := []struct {
		name string
		rrs  []dns.RR
		want int
	}{
		{"PTR only", []dns.RR{&dns.PTR{Hdr: hdr(svc, dns.TypePTR, 120), Ptr: inst}}, 0},
		{"no TXT", []dns.RR{&dns.SRV{Hdr: hdr(inst, dns.TypeSRV, 120), Port: 1, Target: "n1.local."}}, 0},
		{"other service", []dns.RR{
			&dns.SRV{Hdr: hdr("n1._http._tcp.local.", dns.TypeSRV, 120), Port: 1, Target: "n1.local."},
			&dns.TXT{Hdr: hdr("n1._http._tcp.local.", dns.TypeTXT, 120), Txt: []string{"id=x"}},
		}, 0},
		{"SRV and TXT without PTR", []dns.RR{
			&dns.SRV{Hdr: hdr(inst, dns.TypeSRV, 120), Port: 1, Target: "n1.local."},
			&dns.TXT{Hdr: hdr(inst, dns.TypeTXT, 120), Txt: []string{"id=x"}},
		}, 1},
		{"the service name itself is no instance", []dns.RR{
			&dns.SRV{Hdr: hdr(svc, dns.TypeSRV, 120), Port: 1, Target: "n1.local."},
			&dns.TXT{Hdr: hdr(svc, dns.TypeTXT, 120), Txt: []string{"id=x"}},
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newResponse(0)
			m.Answer = tc.rrs
			if got := sightings(m, svc); len(got) != tc.want {
				t.Fatalf("sightings = %+v, want %d", got, tc.want)
			}
		})
	}
}

// FuzzMDNSPacket feeds arbitrary packets to everything this package does
// with a received mDNS message: the responder and the sighting parser. It
// must not panic, and every reply must pack, fit its limits and, for legacy
// queries, echo the ID.
func FuzzMDNSPacket(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(5353))
		f.Add(b, uint16(40000))
	}
	seed(queryMsg(1, question("_apt_proxy._tcp.local.", dns.TypePTR, false)))
	seed(queryMsg(2, question("pkgswarm-0123abcd.local.", dns.TypeA, true)))
	seed(queryMsg(3, question(servicesEnum, dns.TypeANY, false), question("x.local.", dns.TypeTXT, false)))
	z := testZone()
	seed(z.announcement(testIPs, false))
	seed(z.announcement(testIPs, true))
	f.Add([]byte{}, uint16(5353))
	f.Add([]byte{0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c}, uint16(5353))

	svc := ServiceType + "." + mdnsDomain
	f.Fuzz(func(t *testing.T, pkt []byte, port uint16) {
		var m dns.Msg
		if err := m.Unpack(pkt); err != nil {
			return // the receive loop drops these
		}
		for _, s := range sightings(&m, svc) {
			if s.instance == "" {
				t.Fatalf("sighting without instance: %+v", s)
			}
			if !s.goodbye && (s.port <= 0 || s.host == "") {
				t.Fatalf("incomplete sighting returned: %+v", s)
			}
		}
		rep, ok := z.respond(&m, int(port), testIPs)
		if !ok {
			return
		}
		b, err := rep.msg.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, rep.msg)
		}
		if port != mdnsPort {
			if rep.msg.Id != m.Id || !rep.unicast {
				t.Fatalf("legacy reply id=%d unicast=%v, query id=%d", rep.msg.Id, rep.unicast, m.Id)
			}
			limit := dns.MinMsgSize
			if opt := m.IsEdns0(); opt != nil {
				limit = max(int(opt.UDPSize()), dns.MinMsgSize)
			}
			if len(b) > limit {
				t.Fatalf("legacy reply is %d bytes, limit %d", len(b), limit)
			}
			for _, rr := range append(rep.msg.Answer, rep.msg.Extra...) {
				if rr.Header().Ttl > legacyTTL || rr.Header().Class&cacheFlush != 0 {
					t.Fatalf("legacy reply record %v has TTL > %d or cache-flush", rr, legacyTTL)
				}
			}
		} else if len(rep.msg.Question) != 0 || rep.msg.Id != 0 {
			t.Fatalf("mDNS reply with question section or id: %v", rep.msg)
		}
	})
}

func TestMulticastLimiter(t *testing.T) {
	t.Parallel()
	z := testZone()
	t0 := time.Unix(1000, 0)
	var ml multicastLimiter
	ml.mark(z.announcement(testIPs, false), t0)

	ptrQuery := queryMsg(0, question("_pkgswarm._tcp.local.", dns.TypePTR, false))
	aQuery := queryMsg(0, question("pkgswarm-0123abcd.local.", dns.TypeA, false))
	tests := []struct {
		name      string
		query     *dns.Msg
		at        time.Duration
		wantSend  bool
		wantExtra int
	}{
		{"within a second of the announcement", ptrQuery, 500 * time.Millisecond, false, 0},
		{"A record too", aQuery, 900 * time.Millisecond, false, 0},
		{"after a second", ptrQuery, 1100 * time.Millisecond, true, 4},
		{"the A record went out as additional just now", aQuery, 1200 * time.Millisecond, false, 0},
		{"and may go again a second later", aQuery, 2200 * time.Millisecond, true, 0},
	}
	for _, tc := range tests { // in order: each step changes the limiter
		rep, ok := z.respond(tc.query, mdnsPort, testIPs)
		if !ok {
			t.Fatalf("%s: no reply to filter", tc.name)
		}
		send := ml.filter(rep.msg, t0.Add(tc.at))
		if send != tc.wantSend || (send && len(rep.msg.Extra) != tc.wantExtra) {
			t.Fatalf("%s: send=%v extra=%d, want send=%v extra=%d", tc.name, send, len(rep.msg.Extra), tc.wantSend, tc.wantExtra)
		}
	}
}

// FuzzDecodeNodeInfo: a peer's health answer (untrusted) decodes into a node
// with an id, or fails with an error; it never panics.
func FuzzDecodeNodeInfo(f *testing.F) {
	f.Add([]byte(`{"id":"0123456789abcdef","version":"1.0"}`), "")
	f.Add([]byte(`{"id":"a"}`), "b")
	f.Add([]byte(`{"id":""}`), "")
	f.Add([]byte(`[1,2,3]`), "")
	f.Fuzz(func(t *testing.T, b []byte, expect string) {
		info, err := decodeNodeInfo(bytes.NewReader(b), "http://10.0.0.2:3142/_pkgswarm/v1/node", expect)
		if err == nil && (info.ID == "" || expect != "" && info.ID != expect) {
			t.Fatalf("accepted %+v for expected id %q", info, expect)
		}
		if err != nil && info != (NodeInfo{}) {
			t.Fatalf("error %v with a node %+v", err, info)
		}
	})
}
