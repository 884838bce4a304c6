package store

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFollowerToTCP streams a download to a loopback TCP connection
// through a Follower while the Writer fills it, as the front streams a file
// to its client or a peer: io.Copy from the follower to the connection.
// cpu-ns/op is the process's user and system time per download.
func BenchmarkFollowerToTCP(b *testing.B) {
	const size, chunk = 64 << 20, 64 << 10
	s := openTest(b, Options{InMemoryIndex: true})
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := DigestOf(data)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64)
	go func() {
		buf := make([]byte, 256<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n, _ := io.CopyBuffer(struct{ io.Writer }{io.Discard}, c, buf)
			c.Close()
			got <- n
		}
	}()
	b.SetBytes(size)
	cpu0 := cpuTime()
	for b.Loop() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		w, err := s.NewWriter()
		if err != nil {
			b.Fatal(err)
		}
		fo := w.NewFollower(context.Background())
		done := make(chan error, 1)
		go func() {
			for off := 0; off < size; off += chunk {
				if _, err := w.Write(data[off : off+chunk]); err != nil {
					panic(err)
				}
			}
			done <- w.Commit(want)
		}()
		n, err := io.Copy(c, fo)
		fo.Close()
		c.Close()
		if err != nil || n != size {
			b.Fatalf("streamed %d bytes of %d: %v", n, size, err)
		}
		if m := <-got; m != size {
			b.Fatalf("received %d bytes of %d", m, size)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if err := s.DeleteBlob(want); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
