package origin

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestBook(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	// 1 MB/s: 1000 bytes cost 1 ms.
	t.Run("one pacer spaces writes", func(t *testing.T) {
		t.Parallel()
		p := &pacer{rate: 1e6}
		if got := book(ms(0), 1000, p); !got.Equal(ms(0)) {
			t.Fatalf("first write starts at %v, want at once", got.Sub(t0))
		}
		if got := book(ms(0), 1000, p); !got.Equal(ms(1)) {
			t.Fatalf("second write starts at %v, want 1ms", got.Sub(t0))
		}
		if !p.next.Equal(ms(2)) {
			t.Fatalf("next = %v, want 2ms", p.next.Sub(t0))
		}
	})
	t.Run("idle time earns no credit", func(t *testing.T) {
		t.Parallel()
		p := &pacer{rate: 1e6}
		book(ms(0), 1000, p)
		if got := book(ms(50), 5000, p); !got.Equal(ms(50)) {
			t.Fatalf("write after a pause starts at %v, want 50ms", got.Sub(t0))
		}
		if got := book(ms(50), 1000, p); !got.Equal(ms(55)) {
			t.Fatalf("the next one starts at %v, want 55ms: the pause bought no burst", got.Sub(t0))
		}
	})
	t.Run("several pacers: the latest wins and all are booked", func(t *testing.T) {
		t.Parallel()
		resp, conn := &pacer{rate: 1e6}, &pacer{rate: 250e3} // 1000 bytes: 1 ms and 4 ms
		book(ms(0), 1000, conn)                              // an earlier response on the connection
		if got := book(ms(0), 1000, resp, conn); !got.Equal(ms(4)) {
			t.Fatalf("write starts at %v, want 4ms (the connection's turn)", got.Sub(t0))
		}
		if !resp.next.Equal(ms(5)) || !conn.next.Equal(ms(8)) {
			t.Fatalf("next = %v and %v, want 5ms and 8ms", resp.next.Sub(t0), conn.next.Sub(t0))
		}
	})
}

// getOn fetches url with client and returns the body length.
func getOn(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("GET %s: %d, %v", url, resp.StatusCode, err)
	}
	return len(b)
}

// TestPaceConnections: a connection's responses share its rate, and a
// second connection has a rate of its own.
func TestPaceConnections(t *testing.T) {
	t.Parallel()
	const size, rate = 600_000, 2_000_000 // 0.3 s per file, less the first 64 KiB step
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), bytes.Repeat([]byte("x"), size), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.PaceConnections(rate)

	// Two files in a row on one kept-alive connection: the second waits
	// for the first's bytes' turn, so both take (2×size - 64 KiB)/rate.
	one := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	t0 := time.Now()
	getOn(t, one, s.URL+"/f")
	getOn(t, one, s.URL+"/f")
	seq := time.Since(t0)
	bytesPaced := 2*size - 64<<10
	if want := time.Duration(float64(bytesPaced) / rate * float64(time.Second)); seq < want {
		t.Fatalf("two files on one connection took %v, want at least %v", seq, want)
	}
	if n := s.Conns(); n != 1 {
		t.Fatalf("Conns = %d after two GETs on one connection, want 1", n)
	}
	// The same two files on two connections at once take half as long.
	t0 = time.Now()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			getOn(t, &http.Client{Transport: &http.Transport{}}, s.URL+"/f")
		}()
	}
	wg.Wait()
	if par := time.Since(t0); par > seq*3/4 {
		t.Fatalf("two files on two connections took %v, on one %v: the connections share a rate", par, seq)
	}
	if n := s.Conns(); n != 3 {
		t.Fatalf("Conns = %d, want 3", n)
	}
	s.PaceConnections(0)
	s.ResetLog()
	if n := s.Conns(); n != 0 {
		t.Fatalf("Conns = %d after ResetLog", n)
	}
}

// TestWaitIdle: WaitIdle says no while an answer is going out, and yes
// once it has ended, when the log has the request.
func TestWaitIdle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), bytes.Repeat([]byte("z"), 300_000), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Throttle("/f", 1e6) // 0.3 s
	resp, err := http.Get(s.URL + "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if s.WaitIdle(10 * time.Millisecond) {
		t.Fatal("WaitIdle: idle while a paced answer is going out")
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	if !s.WaitIdle(10 * time.Second) {
		t.Fatal("WaitIdle: not idle after the answer ended")
	}
	if n, b := s.Count("/f"); n != 1 || b != 300_000 {
		t.Fatalf("Count = %d, %d after WaitIdle; want 1, 300000", n, b)
	}
}

func TestFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("0123456789"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	do := func(method, p string, header ...string) {
		req, _ := http.NewRequest(method, s.URL+p, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "/a")
	do("GET", "/a", "Range", "bytes=2-")                                                    // 206: served again, in part
	do("GET", "/b", "If-Modified-Since", time.Now().Add(time.Hour).Format(http.TimeFormat)) // 304
	do("HEAD", "/b")
	do("GET", "/missing") // 404
	got := s.Files()
	if len(got) != 1 || got["/a"] != 2 {
		t.Fatalf("Files = %v, want /a served twice and nothing else", got)
	}
	s.ResetLog()
	if got := s.Files(); len(got) != 0 {
		t.Fatalf("Files after ResetLog = %v", got)
	}
}
