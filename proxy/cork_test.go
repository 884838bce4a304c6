package proxy

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// corked reads TCP_CORK off c.
func corked(t *testing.T, c *net.TCPConn) bool {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v != 0
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	return sc.(*net.TCPConn), cc.(*net.TCPConn)
}

// A large body sent from a file while no other is being sent goes out
// corked, and the cork is pulled when it is done (else its last partial
// segment would wait for the kernel's 200 ms timer); with another large
// send under way it goes out uncorked. Not parallel: the count of large
// sends is process-wide.
func TestLoneLargeBodyIsCorked(t *testing.T) {
	const size = 32 << 20 // more than loopback's socket buffers: the send blocks until the client reads
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, bytes.Repeat([]byte{7}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		others int32 // large sends already under way
		want   bool
	}{
		{"alone", 0, true},
		{"beside another", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			largeSends.Add(tc.others)
			defer largeSends.Add(-tc.others)
			server, client := tcpPair(t)
			rc := newRAConn(server, nil)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sent := make(chan error, 1)
			go func() {
				_, err := rc.ReadFrom(io.LimitReader(f, size))
				sent <- err
			}()
			deadline := time.Now().Add(5 * time.Second)
			for largeSends.Load() != tc.others+1 || tc.want && !corked(t, server) {
				if time.Now().After(deadline) {
					t.Fatalf("during the send: TCP_CORK %v, want %v", corked(t, server), tc.want)
				}
				time.Sleep(time.Millisecond)
			}
			if got := corked(t, server); got != tc.want {
				t.Errorf("during the send: TCP_CORK %v, want %v", got, tc.want)
			}
			n, err := io.Copy(io.Discard, io.LimitReader(client, size))
			if err != nil || n != size {
				t.Fatalf("the client read %d of %d bytes: %v", n, size, err)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			if corked(t, server) {
				t.Error("TCP_CORK still set after the send")
			}
			if n := largeSends.Load(); n != tc.others {
				t.Errorf("%d large sends counted after it ended, want %d", n, tc.others)
			}
		})
	}
}

// Only large bodies from files are counted and corked: a small body, or one
// from memory, is sent as it is.
func TestOnlyLargeFileBodiesAreCorked(t *testing.T) {
	server, _ := tcpPair(t)
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, r := range map[string]io.Reader{
		"small file body":  io.LimitReader(f, corkMin-1),
		"large from bytes": io.LimitReader(bytes.NewReader(make([]byte, corkMin)), corkMin),
		"a file itself":    f,
	} {
		if done := corkLoneLargeBody(server, r); done != nil {
			done()
			t.Errorf("%s: counted as a large body from a file", name)
		}
	}
	if corked(t, server) {
		t.Error("TCP_CORK set")
	}
}
