package proxy

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// A large body sent from a file while no other is being sent goes out
// corked (TCP_CORK, as nginx's `tcp_nopush`): the kernel then sends only full
// segments, the answer's head in the body's first one, and the last partial
// segment when the cork is pulled. One client fetching a hot large file got
// 7 % and 11 % more in two of three A/Bs and the same in the third
// (docs/benchmarks.md). Several at once are sent as they come: corked, they
// were measured slower at 4 and 16 clients and dearer in CPU per GB, so the
// cork is kept for the lone send.

// corkMin is the body size from which a lone send is corked: a small body
// is one segment or two, and the quick lane sends its head and body in one
// write anyway.
const corkMin = 1 << 20

// largeSends counts the large bodies being sent from files, process-wide.
var largeSends atomic.Int32

// setCork sets or clears TCP_CORK on tc (a variable: tests watch it).
var setCork = func(tc *net.TCPConn, on bool) error {
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	v := 0
	if on {
		v = 1
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, v)
	}); err != nil {
		return err
	}
	return serr
}

// corkLoneLargeBody counts the send of r on c when r is a large body from a
// file (net/http's io.CopyN of http.ServeContent), corks c when it is the
// only such send, and returns what ends it (nil when r is not such a body).
func corkLoneLargeBody(c net.Conn, r io.Reader) (done func()) {
	lr, ok := r.(*io.LimitedReader)
	if !ok || lr.N < corkMin {
		return nil
	}
	if _, ok := lr.R.(*os.File); !ok {
		return nil
	}
	tc, _ := c.(*net.TCPConn)
	corked := largeSends.Add(1) == 1 && tc != nil && setCork(tc, true) == nil
	return func() {
		if corked {
			setCork(tc, false) // sends the last partial segment
		}
		largeSends.Add(-1)
	}
}
