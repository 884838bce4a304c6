package origin

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// tcpServer accepts connections on loopback and runs handle on each.
func tcpServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startRelay(t *testing.T, target string, l Link) *Relay {
	t.Helper()
	r, err := StartRelay(target, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Port < 20000 || r.Port > 32767 {
		t.Fatalf("relay port %d outside 20000-32767", r.Port)
	}
	return r
}

// echoLines answers every line with itself.
func echoLines(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		if _, err := c.Write(line); err != nil {
			return
		}
	}
}

// TestRelayDelay: the first exchange on a connection costs the handshake's
// round trip and its own; later ones one round trip each.
func TestRelayDelay(t *testing.T) {
	t.Parallel()
	const delay = 25 * time.Millisecond
	r := startRelay(t, tcpServer(t, echoLines), Link{Delay: delay})
	dialed := time.Now()
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	exchange := func(t0 time.Time) time.Duration {
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil || line != "ping\n" {
			t.Fatalf("echo = %q, %v", line, err)
		}
		return time.Since(t0)
	}
	if first := exchange(dialed); first < 4*delay {
		t.Fatalf("first exchange took %v, want at least %v (set-up round trip plus one)", first, 4*delay)
	}
	for range 3 {
		if d := exchange(time.Now()); d < 2*delay {
			t.Fatalf("exchange took %v, want at least one round trip, %v", d, 2*delay)
		}
	}
	st := r.Stats()
	if st.Conns != 1 || st.Up != 4*5 || st.Down != 4*5 {
		t.Fatalf("Stats = %+v, want 1 connection, 20 bytes each way", st)
	}
	r.ResetStats()
	if st := r.Stats(); st != (RelayStats{}) {
		t.Fatalf("Stats after ResetStats = %+v", st)
	}
}

// TestRelayKeepsOrderAndThroughput: 8 MiB cross a relay with 200 ms of
// delay intact, and in far less time than a relay that held each 64 KiB
// chunk back 200 ms before reading the next would take (128 × 200 ms,
// 25.6 s): the delay adds latency, not a limit on throughput.
func TestRelayKeepsOrderAndThroughput(t *testing.T) {
	t.Parallel()
	const size, delay = 8 << 20, 200 * time.Millisecond
	payload := make([]byte, size)
	rand.NewChaCha8([32]byte{1, 2}).Read(payload)
	want := sha256.Sum256(payload)
	r := startRelay(t, tcpServer(t, func(c net.Conn) { c.Write(payload) }), Link{Delay: delay})
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t0 := time.Now()
	h := sha256.New()
	n, err := io.Copy(h, c)
	elapsed := time.Since(t0)
	if err != nil || n != size {
		t.Fatalf("read %d bytes, %v; want %d", n, err, size)
	}
	if [32]byte(h.Sum(nil)) != want {
		t.Fatal("the bytes changed or came out of order")
	}
	stopAndWait := time.Duration(size/(64<<10)) * delay
	if elapsed > stopAndWait/2 {
		t.Fatalf("8 MiB took %v through a %v relay, a chunk per delay would take %v: the delay is limiting throughput", elapsed, delay, stopAndWait)
	}
}

// TestRelayRate: a rate limits every connection together.
func TestRelayRate(t *testing.T) {
	t.Parallel()
	const size, rate = 500_000, 4_000_000
	body := bytes.Repeat([]byte("y"), size)
	r := startRelay(t, tcpServer(t, func(c net.Conn) { c.Write(body) }), Link{Rate: rate})
	t0 := time.Now()
	done := make(chan int64, 2)
	for range 2 {
		go func() {
			c, err := net.Dial("tcp", r.Addr)
			if err != nil {
				done <- 0
				return
			}
			defer c.Close()
			n, _ := io.Copy(io.Discard, c)
			done <- n
		}()
	}
	if a, b := <-done, <-done; a != size || b != size {
		t.Fatalf("read %d and %d bytes, want %d each", a, b, size)
	}
	// Two connections share the rate: 1 MB at 4 MB/s, less one 64 KiB step.
	bytesPaced := 2*size - 64<<10
	if want := time.Duration(float64(bytesPaced) / rate * float64(time.Second)); time.Since(t0) < want {
		t.Fatalf("1 MB took %v at %d B/s, want at least %v", time.Since(t0), rate, want)
	}
	if st := r.Stats(); st.Conns != 2 || st.Down != 2*size {
		t.Fatalf("Stats = %+v", st)
	}
}

// TestRelayHalfClose: a client's EOF reaches the server, whose answer
// still comes back.
func TestRelayHalfClose(t *testing.T) {
	t.Parallel()
	r := startRelay(t, tcpServer(t, func(c net.Conn) {
		req, _ := io.ReadAll(c) // until the client's half-close
		c.Write(append([]byte("got "), req...))
	}), Link{Delay: 5 * time.Millisecond})
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("request"))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := io.ReadAll(c)
	if err != nil || string(resp) != "got request" {
		t.Fatalf("answer = %q, %v", resp, err)
	}
}

// TestRelayClose ends open connections and refuses new ones.
func TestRelayClose(t *testing.T) {
	t.Parallel()
	r, err := StartRelay(tcpServer(t, echoLines), Link{Delay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x\n"))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a relayed connection is still open after Close")
	}
	if _, err := net.Dial("tcp", r.Addr); err == nil {
		t.Fatal("a closed relay accepted a connection")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := StartRelay("127.0.0.1:1", Link{Delay: -1}); err == nil {
		t.Fatal("StartRelay took a negative delay")
	}
}
