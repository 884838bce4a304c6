package office

import (
	"context"
	"fmt"
	"net"

	"github.com/pkgswarm/pkgswarm/internal/netlab"
)

// dialIn dials addr from inside the network namespace ns.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := netlab.InNetns(ns, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s in namespace %s: %w", network, addr, ns, err)
	}
	return c, nil
}

// listenIn listens on addr inside the network namespace ns.
func listenIn(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := netlab.InNetns(ns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s in namespace %s: %w", network, addr, ns, err)
	}
	return ln, nil
}

// ListenIn listens on addr inside host's network namespace, for a server of
// the caller's own in a lab host (a benchmark's tracker, say).
func ListenIn(host *netlab.Host, network, addr string) (net.Listener, error) {
	return listenIn(host.Namespace(), network, addr)
}
