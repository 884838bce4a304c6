package proxy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestParseHead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		head        string
		method, uri string
		body        bool
	}{
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "http://h/x.deb", false},
		{"GET /h/x.deb HTTP/1.0\r\n\r\n", "GET", "/h/x.deb", false},
		{"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n", "POST", "/x", true},
		{"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "POST", "/x", true},
		{"HEAD /h/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HEAD", "/h/x", false},
		{"garbage\r\n\r\n", "", "", false},
		{"GET /x HTTP/2.0\r\n\r\n", "", "", false},
	} {
		m, u, b := parseHead([]byte(tc.head))
		if m != tc.method || u != tc.uri || b != tc.body {
			t.Errorf("parseHead(%q) = %q %q %v, want %q %q %v", tc.head, m, u, b, tc.method, tc.uri, tc.body)
		}
	}
}

// Only requests queued behind an unanswered one are started ahead: a client
// that waits for each answer (keep-alive, no pipelining) starts nothing.
func TestScanStartsOnlyQueuedRequests(t *testing.T) {
	t.Parallel()
	var started []string
	c := &raConn{sem: make(chan struct{}, maxAhead)}
	c.startFn = func(uri string) { started = append(started, uri) }
	get := func(u string) []byte { return []byte("GET " + u + " HTTP/1.1\r\nHost: h\r\n\r\n") }
	c.scan(get("/h/1.deb")) // served next by the server itself
	c.mu.Lock()
	c.answered++
	c.mu.Unlock()
	c.scan(get("/h/2.deb")) // keep-alive, after the answer: not ahead
	if len(started) != 0 {
		t.Fatalf("started %v for a client that does not pipeline", started)
	}
	c.scan(append(append(get("/h/3.deb"), get("/h/4.deb")...), get("/h/5.deb")[:10]...))
	c.scan(get("/h/5.deb")[10:])
	// /h/2.deb is being answered: the three behind it are queued.
	if strings.Join(started, " ") != "/h/3.deb /h/4.deb /h/5.deb" {
		t.Fatalf("started %v, want the three requests queued behind /h/2.deb", started)
	}
	c.scan([]byte("POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /h/6.deb HTTP/1.1\r\n\r\n"))
	if len(started) != 3 {
		t.Fatalf("started %v after a request with a body", started)
	}
}

func FuzzParseHead(f *testing.F) {
	f.Add([]byte("GET http://h/x.deb HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, u, _ := parseHead(b)
		if m != "" && (u == "" || strings.ContainsAny(m, " \r\n")) {
			t.Fatalf("parseHead(%q) = %q %q", b, m, u)
		}
		_ = http.MethodGet
	})
}

// A small read (net/http's one-byte background read while a handler runs)
// still takes in, and scans, every request head the client has sent: the
// read-ahead must see a request when it arrives, not when the server's
// buffer has drained down to it. The bytes are then handed out in order,
// none lost or repeated.
func TestSmallReadScansWhatArrived(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	defer client.Close()
	var mu sync.Mutex
	var started []string
	c := &raConn{Conn: server, sem: make(chan struct{}, maxAhead)}
	c.startFn = func(uri string) { mu.Lock(); started = append(started, uri); mu.Unlock() }
	var sent []byte
	for i := 1; i <= 3; i++ {
		sent = append(sent, fmt.Sprintf("GET /h/%d.deb HTTP/1.1\r\nHost: h\r\n\r\n", i)...)
	}
	go client.Write(sent)
	var got []byte
	one := make([]byte, 1)
	for len(got) < len(sent) {
		n, err := c.Read(one)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, one[:n]...)
		if len(got) == 1 {
			mu.Lock()
			s := strings.Join(started, " ")
			mu.Unlock()
			if s != "/h/2.deb /h/3.deb" {
				t.Fatalf("after a one-byte read, started %q; want the two requests queued behind the first", s)
			}
		}
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("read %q, want %q", got, sent)
	}
}
