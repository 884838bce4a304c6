package discovery

import (
	"net"
	"strings"

	"github.com/miekg/dns"
)

// DNS-SD names (RFC 6763) this package announces and browses.
const (
	// ServiceType is the service every node announces and browses.
	ServiceType = "_pkgswarm._tcp"
	// AptProxyServiceType is what squid-deb-proxy-client and auto-apt-proxy browse.
	AptProxyServiceType = "_apt_proxy._tcp"
	// AcngServiceType is apt-cacher-ng's own service name.
	AcngServiceType = "_apt-proxy._tcp"

	mdnsDomain   = "local."
	mdnsPort     = 5353
	mdnsGroup    = "224.0.0.251"
	servicesEnum = "_services._dns-sd._udp.local."

	// multicastTTL is the TTL of every record sent by multicast. RFC 6762 §10
	// recommends 120 s for records naming a host; we use it for all records
	// so that real clients (avahi) forget a node that died without a goodbye
	// within two minutes instead of 75.
	multicastTTL = 120
	// legacyTTL caps TTLs in replies to legacy unicast queries (RFC 6762 §6.7).
	legacyTTL = 10
	// cacheFlush is the top bit of rrclass in mDNS responses (RFC 6762 §10.2).
	cacheFlush = 1 << 15
	// unicastResponse is the top bit of qclass in mDNS questions (RFC 6762 §5.4).
	unicastResponse = 1 << 15
)

// zone holds the records a node answers for. It is immutable after newZone.
type zone struct {
	host     string   // SRV target, e.g. "pkgswarm-0123abcd.local."
	services []string // e.g. "_pkgswarm._tcp.local."
	instance string   // escaped instance label
	port     uint16
	txt      []string
}

// record is one answerable resource record; unique records (SRV, TXT,
// A/AAAA) get the cache-flush bit in multicast responses, shared ones (PTR)
// never do.
type record struct {
	rr     dns.RR
	unique bool
}

func newZone(instance, host string, port int, services []string, txt []string) *zone {
	z := &zone{host: dns.Fqdn(host), instance: escapeLabel(instance), port: uint16(port), txt: txt}
	for _, s := range services {
		z.services = append(z.services, s+"."+mdnsDomain)
	}
	return z
}

func (z *zone) instanceName(service string) string { return z.instance + "." + service }

// records returns every record of the zone for a link whose addresses are ips,
// with TTL ttl.
func (z *zone) records(ips []net.IP, ttl uint32) []record {
	var recs []record
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	for _, s := range z.services {
		in := z.instanceName(s)
		recs = append(recs,
			record{rr: &dns.PTR{Hdr: hdr(servicesEnum, dns.TypePTR), Ptr: s}},
			record{rr: &dns.PTR{Hdr: hdr(s, dns.TypePTR), Ptr: in}},
			record{rr: &dns.SRV{Hdr: hdr(in, dns.TypeSRV), Port: z.port, Target: z.host}, unique: true},
			// A TXT record must exist, even an empty one (RFC 6763 §6):
			// avahi fails to resolve a service without it.
			record{rr: &dns.TXT{Hdr: hdr(in, dns.TypeTXT), Txt: z.txtOrEmpty()}, unique: true},
		)
	}
	for _, ip := range ips {
		if ip4 := ip.To4(); ip4 != nil {
			recs = append(recs, record{rr: &dns.A{Hdr: hdr(z.host, dns.TypeA), A: ip4}, unique: true})
		} else if ip16 := ip.To16(); ip16 != nil {
			recs = append(recs, record{rr: &dns.AAAA{Hdr: hdr(z.host, dns.TypeAAAA), AAAA: ip16}, unique: true})
		}
	}
	return recs
}

func (z *zone) txtOrEmpty() []string {
	if len(z.txt) == 0 {
		return []string{""}
	}
	return z.txt
}

// announcement is an unsolicited response carrying every record (RFC 6762
// §8.3), or a goodbye (every record with TTL 0, §10.1) when goodbye is set.
func (z *zone) announcement(ips []net.IP, goodbye bool) *dns.Msg {
	ttl := uint32(multicastTTL)
	if goodbye {
		ttl = 0
	}
	m := newResponse(0)
	seen := map[string]bool{}
	for _, r := range z.records(ips, ttl) {
		// The enumeration PTR repeats once per service; send each once.
		if k := r.rr.String(); !seen[k] {
			seen[k] = true
			m.Answer = append(m.Answer, withFlush(r, !goodbye))
		}
	}
	return m
}

// reply is what respond decided to send.
type reply struct {
	msg     *dns.Msg
	unicast bool // to the querier's address; otherwise to the multicast group
}

// respond builds the answer to query, received from a source port srcPort on
// a link whose addresses are ips. ok is false when there is nothing to say.
// Rules (RFC 6762):
//   - §6.7 legacy unicast (source port not 5353): unicast reply echoing the ID
//     and the question, TTL at most 10 s, no cache-flush bits, truncated to
//     the querier's buffer;
//   - §5.4 a query whose questions all have the QU bit gets a unicast reply,
//     anything else a multicast one; both carry no question section (avahi
//     drops multicast responses that have one) and ID 0 (§18.1);
//   - §7.1 known-answer suppression: a record the querier listed with at
//     least half our TTL left is not sent;
//   - RFC 6763 §12: a PTR answer brings its SRV, TXT and addresses as
//     additional records, an SRV answer its addresses.
//
// Queries with the TC bit are answered at once with the known answers they
// carry (§7.2 allows waiting for more; answering is merely chattier).
func (z *zone) respond(query *dns.Msg, srcPort int, ips []net.IP) (reply, bool) {
	if query.Response || query.Opcode != dns.OpcodeQuery || query.Rcode != dns.RcodeSuccess {
		return reply{}, false // §18.3, §18.11: silently ignored
	}
	legacy := srcPort != mdnsPort
	ttl := uint32(multicastTTL)
	if legacy {
		ttl = legacyTTL
	}
	all := z.records(ips, ttl)
	var answers, extra []record
	allQU := true
	has := func(list []record, rr dns.RR) bool {
		for _, r := range list {
			if dns.IsDuplicate(r.rr, rr) {
				return true
			}
		}
		return false
	}
	for _, q := range query.Question {
		if q.Qclass&unicastResponse == 0 {
			allQU = false
		}
		class := q.Qclass &^ unicastResponse
		if class != dns.ClassINET && class != dns.ClassANY {
			continue
		}
		for _, r := range all {
			h := r.rr.Header()
			if (q.Qtype == h.Rrtype || q.Qtype == dns.TypeANY) && strings.EqualFold(q.Name, h.Name) &&
				!has(answers, r.rr) && !knownAnswer(query.Answer, r.rr) {
				answers = append(answers, r)
			}
		}
	}
	if len(answers) == 0 {
		return reply{}, false
	}
	addExtra := func(name string, types ...uint16) {
		for _, r := range all {
			h := r.rr.Header()
			for _, t := range types {
				if h.Rrtype == t && strings.EqualFold(h.Name, name) && !has(answers, r.rr) && !has(extra, r.rr) {
					extra = append(extra, r)
				}
			}
		}
	}
	for i := 0; i < len(answers); i++ {
		switch rr := answers[i].rr.(type) {
		case *dns.PTR:
			if !strings.EqualFold(rr.Hdr.Name, servicesEnum) { // the enumeration PTR names a service, not an instance
				addExtra(rr.Ptr, dns.TypeSRV, dns.TypeTXT)
				addExtra(z.host, dns.TypeA, dns.TypeAAAA)
			}
		case *dns.SRV:
			addExtra(rr.Target, dns.TypeA, dns.TypeAAAA)
		}
	}

	if legacy {
		m := newResponse(query.Id)
		m.Question = append([]dns.Question(nil), query.Question...)
		for _, r := range answers {
			m.Answer = append(m.Answer, r.rr)
		}
		for _, r := range extra {
			m.Extra = append(m.Extra, r.rr)
		}
		size := dns.MinMsgSize
		if opt := query.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
		m.Compress = true
		return reply{msg: m, unicast: true}, true
	}
	m := newResponse(0)
	for _, r := range answers {
		m.Answer = append(m.Answer, withFlush(r, true))
	}
	for _, r := range extra {
		m.Extra = append(m.Extra, withFlush(r, true))
	}
	return reply{msg: m, unicast: allQU}, true
}

// knownAnswer reports whether the querier listed rr with at least half our
// TTL still to run (RFC 6762 §7.1).
func knownAnswer(known []dns.RR, rr dns.RR) bool {
	for _, k := range known {
		kc := dns.Copy(k)
		kc.Header().Class &^= cacheFlush
		if dns.IsDuplicate(kc, rr) && kc.Header().Ttl >= rr.Header().Ttl/2 {
			return true
		}
	}
	return false
}

func newResponse(id uint16) *dns.Msg {
	return &dns.Msg{
		MsgHdr:   dns.MsgHdr{Id: id, Response: true, Opcode: dns.OpcodeQuery, Authoritative: true},
		Compress: true,
	}
}

func withFlush(r record, flush bool) dns.RR {
	if !r.unique || !flush {
		return r.rr
	}
	c := dns.Copy(r.rr)
	c.Header().Class |= cacheFlush
	return c
}

// escapeLabel turns s into one DNS label in presentation format: dots and
// backslashes are escaped so that they stay inside the label.
func escapeLabel(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `.`, `\.`)
	return r.Replace(s)
}

// sighting is what one mDNS response says about one instance of a service.
type sighting struct {
	instance string // fully qualified instance name
	host     string
	port     int
	ips      []net.IP
	txt      []string
	goodbye  bool // the instance's PTR (or SRV) came with TTL 0
}

// sightings extracts the instances of service (e.g. "_pkgswarm._tcp.local.")
// that msg describes, from its answer and additional sections. An instance
// is returned when its SRV and TXT records are present (addresses may be
// missing), or when it says goodbye.
func sightings(msg *dns.Msg, service string) []sighting {
	suffix := "." + strings.ToLower(service)
	byName := map[string]*sighting{}
	var order []string
	get := func(name string) *sighting {
		k := strings.ToLower(name)
		s, ok := byName[k]
		if !ok {
			s = &sighting{instance: name, port: -1}
			byName[k] = s
			order = append(order, k)
		}
		return s
	}
	isInstance := func(name string) bool {
		l := strings.ToLower(name)
		return strings.HasSuffix(l, suffix) && len(l) > len(suffix)
	}
	rrs := append(append([]dns.RR(nil), msg.Answer...), msg.Extra...)
	hasTXT := map[string]bool{}
	for _, rr := range rrs {
		h := rr.Header()
		if h.Class&^cacheFlush != dns.ClassINET {
			continue
		}
		switch rr := rr.(type) {
		case *dns.PTR:
			if strings.EqualFold(h.Name, service) && isInstance(rr.Ptr) {
				s := get(rr.Ptr)
				if h.Ttl == 0 {
					s.goodbye = true
				}
			}
		case *dns.SRV:
			if isInstance(h.Name) {
				s := get(h.Name)
				s.host, s.port = rr.Target, int(rr.Port)
				if h.Ttl == 0 {
					s.goodbye = true
				}
			}
		case *dns.TXT:
			if isInstance(h.Name) {
				s := get(h.Name)
				s.txt = rr.Txt
				hasTXT[strings.ToLower(h.Name)] = true
			}
		}
	}
	var out []sighting
	for _, k := range order {
		s := byName[k]
		if s.goodbye {
			out = append(out, sighting{instance: s.instance, goodbye: true})
			continue
		}
		if s.port <= 0 || s.host == "" || !hasTXT[k] {
			continue
		}
		for _, rr := range rrs {
			h := rr.Header()
			if !strings.EqualFold(h.Name, s.host) || h.Ttl == 0 {
				continue
			}
			switch rr := rr.(type) {
			case *dns.A:
				s.ips = append(s.ips, rr.A)
			case *dns.AAAA:
				s.ips = append(s.ips, rr.AAAA)
			}
		}
		out = append(out, *s)
	}
	return out
}
