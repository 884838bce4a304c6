// Package discovery finds the other pkgswarm nodes of a LAN and keeps the set
// of those that are alive and trusted.
//
// Peers come from two sources. With Config.MDNS the node announces
// _pkgswarm._tcp (TXT v=1, id=<NodeID>) by multicast DNS on the chosen
// interfaces, answers queries for it, browses for other nodes every
// BrowseInterval (with github.com/hashicorp/mdns's client) and also learns from
// the announcements and multicast answers it overhears; with AnnounceAptProxy
// it also announces _apt_proxy._tcp and _apt-proxy._tcp so that unmodified apt
// clients (auto-apt-proxy, squid-deb-proxy-client) find it. Static peers are
// base URLs given in Config.Static.
//
// Every peer is health-checked with GET <URL>/_pkgswarm/v1/node, which must
// answer {"id":...} (for an mDNS peer, the id it announced). Peers returns the
// peers whose last check succeeded, that are not banned (Ban) and, for mDNS
// peers, that were seen within ExpireAfter or have not said goodbye. It never
// returns this node: a static URL that answers with our own id is dropped.
// Three failures reported by the caller (ReportFailure) mark a peer unhealthy
// until a health check succeeds again.
//
// The mDNS responder is this package's own (see mdns.go for why
// hashicorp/mdns's server is not enough): it answers from UDP 5353 on the
// chosen interfaces only, sends multicast responses without a question
// section, answers legacy unicast queries (RFC 6762 §6.7, e.g. `dig -p 5353
// @node`) with the ID and question echoed and TTL ≤ 10, answers A queries
// for its host name, announces on start (§8.3) and sends a goodbye (TTL 0,
// §10.1) when Run returns. Run returns at once when its context ends: a
// browse query still running (hashicorp/mdns's ignores its context until
// its timeout, at most a second) is left to end by itself, and what it
// finds is dropped. Its start-up query asks for unicast answers (QU,
// §5.4): a running node multicasts a record at most once a second (§6), so a
// node starting less than a second after another would otherwise hear from
// the running nodes only when its first browse returns. It does not probe for name conflicts (§8.1): the
// instance and host names contain the NodeID, which is unique by contract.
// Only IPv4 mDNS is spoken; AAAA records are announced for non-link-local
// IPv6 addresses. The interface list is read once, when Run starts.
// Browsing answers count only when the peer's address is on a prefix of the
// interface it was asked on (RFC 6762 §11), so a node limited to some
// interfaces never takes in peers from the others.
//
// Discovery never imports another pkgswarm package and never decides trust
// in content: it only reports peers; the caller bans the ones that misbehave.
package discovery
