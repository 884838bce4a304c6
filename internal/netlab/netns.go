package netlab

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` keeps its named namespaces.
const netnsDir = "/run/netns"

// InNetns runs fn on an OS thread that has joined the named network
// namespace, in a goroutine of its own, and waits for it. Sockets and
// devices fn makes (listeners, dialed connections, a tun device) belong to
// that namespace for their whole life, wherever they are used afterwards;
// that is how a harness listens and dials inside a lab from the test process
// without a helper process.
//
// fn must not start goroutines that make sockets: only fn's own goroutine
// runs in the namespace. If the thread cannot be returned to its namespace it
// stays locked, and the runtime ends it when the goroutine returns, so no
// other goroutine ever runs in the wrong namespace.
func InNetns(ns string, fn func() error) error {
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
