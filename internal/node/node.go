package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy"
	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/origin"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/trust"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
)

// Config configures a node. Zero values mean each part's documented
// defaults.
type Config struct {
	// Store is the content store. Required; the node does not close it.
	Store *store.Store

	// Trust.
	AptKeyring            *apt.Keyring
	RPMKeys               *rpmsig.KeySet
	RPMConfiguredKeysOnly bool
	Revalidate            time.Duration
	MaxClockSkew          time.Duration
	// OnShareable, if set, is called once per blob newly marked shareable
	// (the swarm seeds it). It must not block.
	OnShareable func(d store.Digest)
	// SideHash, if set, computes a second hash of each verified download
	// as it arrives (fetch.Config.SideHash: the swarm's piece hashes).
	SideHash func(size int64) fetch.SideHasher

	// Origin.
	AllowPorts      []int
	Mirrors         map[string][]string
	Egress          origin.Egress
	OriginTransport *http.Transport
	OriginConns     int // connections per origin host; 0: origin.DefaultMaxConnsPerHost
	OriginPipeline  int // requests in flight per http:// origin connection; 0: origin.DefaultPipelineDepth, 1: no pipelining
	Offline         bool

	// Pipeline.
	Site, Wide    []fetch.Source // LAN and swarm tiers
	StallTimeout  time.Duration
	MinRate       int64
	RateWindow    time.Duration
	MaxUnverified int64

	// Front.
	AllowClients []netip.Prefix
	ConnectAllow []string
	Hold         time.Duration

	NodeID, Version string
	Peers           func() any
	Extra           func() map[string]any
	Logger          *slog.Logger
	Now             func() time.Time
}

// Node is a wired node.
type Node struct {
	Store   *store.Store
	Origin  *origin.Client
	Fetch   *fetch.Fetcher
	Trust   *trust.Resolver
	Proxy   *proxy.Server
	Metrics *status.Metrics
	Status  *status.Node
	// Handler is the front wrapped by the status wrapper: what to serve.
	Handler http.Handler

	cancel context.CancelFunc
}

// New wires a node.
func New(cfg Config) (*Node, error) {
	if cfg.Store == nil {
		return nil, errors.New("node: Config.Store is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	failures := &status.FailureLog{Now: cfg.Now}
	m := status.NewMetrics(failures)
	oc, err := origin.New(origin.Config{AllowPorts: cfg.AllowPorts, Mirrors: cfg.Mirrors, Egress: cfg.Egress,
		Transport: cfg.OriginTransport, MaxConnsPerHost: cfg.OriginConns, PipelineDepth: cfg.OriginPipeline, Version: cfg.Version, Offline: cfg.Offline, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("origin client: %w", err)
	}
	f, err := fetch.New(fetch.Config{Store: cfg.Store, Site: cfg.Site, Wide: cfg.Wide, Origin: m.Origin(oc), Mirrors: oc.Mirrors,
		Offline: cfg.Offline, StallTimeout: cfg.StallTimeout, MinRate: cfg.MinRate, RateWindow: cfg.RateWindow,
		MaxUnverified: cfg.MaxUnverified, SideHash: cfg.SideHash, Observer: m, Logger: log, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	tr, err := trust.New(trust.Config{Store: cfg.Store, Fetch: f, AptKeyring: cfg.AptKeyring, RPMKeys: cfg.RPMKeys,
		RPMConfiguredKeysOnly: cfg.RPMConfiguredKeysOnly, RevalidateEvery: cfg.Revalidate, MaxClockSkew: cfg.MaxClockSkew,
		OnRefused: m.Refused, OnShareable: cfg.OnShareable, Logger: log, Now: cfg.Now})
	if err != nil {
		f.Close()
		return nil, err
	}
	px, err := proxy.New(proxy.Config{Store: cfg.Store, Trust: tr, Fetch: f, AllowClients: cfg.AllowClients,
		AllowPorts: cfg.AllowPorts, ConnectAllow: cfg.ConnectAllow, Hold: cfg.Hold, NodeID: cfg.NodeID,
		Version: cfg.Version, Logger: log, QuickHit: m.QuickHit})
	if err != nil {
		tr.Close()
		f.Close()
		return nil, err
	}
	st := &status.Node{NodeID: cfg.NodeID, Version: cfg.Version, Offline: cfg.Offline, Store: cfg.Store, Trust: tr,
		Fetch: f, Metrics: m, Peers: cfg.Peers, Extra: cfg.Extra, Now: cfg.Now}
	ctx, cancel := context.WithCancel(context.Background())
	st.Routes(ctx, px)
	return &Node{Store: cfg.Store, Origin: oc, Fetch: f, Trust: tr, Proxy: px, Metrics: m, Status: st,
		Handler: m.Handler(px, log), cancel: cancel}, nil
}

// Close stops the node's downloads and background work (not the store).
func (n *Node) Close() {
	n.cancel()
	n.Fetch.Close()
	n.Trust.Close()
}
