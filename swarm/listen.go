package swarm

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// listenPlan is where a node listens, parsed from Config.ListenAddr.
type listenPlan struct {
	host       netip.Addr // the one address to listen on; invalid for a wildcard
	ipv4, ipv6 bool       // the families listened on (and talked to)
	port       int
}

// parseListenAddr parses Config.ListenAddr (see there for the forms).
func parseListenAddr(s string) (listenPlan, error) {
	addr := s
	if addr == "" {
		addr = ":0"
	}
	bad := func(reason string) (listenPlan, error) {
		return listenPlan{}, &ListenAddrError{Addr: s, Reason: reason}
	}
	hostStr, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		switch {
		case errors.As(err, &ae) && strings.HasPrefix(ae.Err, "too many colons"):
			return bad("an IPv6 address goes in brackets, as in [::1]:6881")
		case errors.As(err, &ae):
			return bad(ae.Err)
		}
		return bad(err.Error())
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return bad("port " + strconv.Quote(portStr) + " is not a number from 0 to 65535")
	}
	p := listenPlan{port: int(port)}
	if hostStr == "" {
		p.ipv4, p.ipv6 = true, true
		return p, nil
	}
	ip, err := netip.ParseAddr(hostStr)
	if err != nil {
		if strings.Contains(hostStr, ":") {
			return bad("host " + strconv.Quote(hostStr) + " is not an IPv6 address")
		}
		return bad("host " + strconv.Quote(hostStr) + " is not an IP address (a name could mean several, or change)")
	}
	// "[::ffff:192.0.2.7]" is 192.0.2.7: the socket would be IPv4's anyway.
	ip = ip.Unmap()
	switch {
	case ip.IsMulticast():
		return bad("host " + ip.String() + " is a multicast address")
	case ip.Is4() && ip == netip.IPv4Unspecified():
	case ip.Is6() && ip.WithZone("") == netip.IPv6Unspecified():
		if ip.Zone() != "" {
			return bad("an unspecified address takes no zone; use [::]:" + portStr)
		}
	case ip.Zone() != "" && !ip.IsLinkLocalUnicast():
		return bad("only a link-local IPv6 address takes a zone (%" + ip.Zone() + ")")
	case ip.IsLinkLocalUnicast() && ip.Is6() && ip.Zone() == "":
		return bad("a link-local IPv6 address needs its interface, e.g. [" + ip.String() + "%eth0]:" + portStr)
	default:
		p.host = ip
	}
	p.ipv4, p.ipv6 = ip.Is4(), ip.Is6()
	return p, nil
}

// tcpNetwork is "tcp4" or "tcp6" for a plan of one family, else "tcp".
func (p listenPlan) tcpNetwork() string {
	switch {
	case p.ipv4 && !p.ipv6:
		return "tcp4"
	case p.ipv6 && !p.ipv4:
		return "tcp6"
	}
	return "tcp"
}

// tcpAddr is the plan's host (nil IP for a wildcard) with port.
func (p listenPlan) tcpAddr(port int) *net.TCPAddr {
	if !p.host.IsValid() {
		return &net.TCPAddr{Port: port}
	}
	return &net.TCPAddr{IP: p.host.AsSlice(), Zone: p.host.Zone(), Port: port}
}

// String is the plan as an address to listen on, for messages.
func (p listenPlan) String() string {
	host := ""
	switch {
	case p.host.IsValid():
		host = p.host.String()
	case p.ipv4 && !p.ipv6:
		host = "0.0.0.0"
	case p.ipv6 && !p.ipv4:
		host = "::"
	}
	return net.JoinHostPort(host, strconv.Itoa(p.port))
}
