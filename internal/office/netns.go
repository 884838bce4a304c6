package office

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/pkgswarm/pkgswarm/internal/netlab"
)

// netnsDir is where `ip netns add` keeps its named namespaces.
const netnsDir = "/run/netns"

// inNetns runs fn on an OS thread that has joined the named network
// namespace, in a goroutine of its own, and waits for it. Sockets fn makes
// (listeners, dialed connections) belong to that namespace for their whole
// life, wherever they are used afterwards; that is how the harness listens
// and dials inside a lab from the test process without a helper process.
//
// fn must not start goroutines that make sockets: only fn's own goroutine
// runs in the namespace. If the thread cannot be returned to its namespace it
// stays locked, and the runtime ends it when the goroutine returns, so no
// other goroutine ever runs in the wrong namespace.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Unlocked only once the thread is back in its own namespace.
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open this thread's network namespace: %w", err)
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join(netnsDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open network namespace %s (is the lab still up?): %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime discards it when this
			// goroutine ends.
			errc <- fmt.Errorf("leave network namespace %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// dialIn dials addr from inside the network namespace ns.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
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
	err := inNetns(ns, func() error {
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
