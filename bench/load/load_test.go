package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var body = []byte(strings.Repeat("pkgswarm", 4096))

func digest(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func TestRunCountsAndChecks(t *testing.T) {
	t.Parallel()
	ok := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	tests := []struct {
		name              string
		opts              Options
		requests, errors  int
		firstErrSubstring string
	}{
		{"count bound", Options{Clients: 3, MaxRequests: 10, WantSize: int64(len(body)), WantSHA256: digest(body)}, 10, 0, ""},
		{"wrong size", Options{Clients: 2, MaxRequests: 4, WantSize: 5}, 0, 4, "want 5"},
		{"wrong digest", Options{Clients: 1, MaxRequests: 2, WantSHA256: digest([]byte("x"))}, 0, 2, "sha256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.opts
			o.Client, o.URL, o.MaxDuration = ok.Client(), ok.URL, time.Minute
			r, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Requests != tc.requests || r.Errors != tc.errors || r.TimedOut {
				t.Fatalf("Run = %d ok, %d errors, timed out %v; want %d, %d, false", r.Requests, r.Errors, r.TimedOut, tc.requests, tc.errors)
			}
			if !strings.Contains(r.FirstErr, tc.firstErrSubstring) {
				t.Fatalf("FirstErr = %q, want it to contain %q", r.FirstErr, tc.firstErrSubstring)
			}
			if tc.errors == 0 && r.Bytes != int64(tc.requests*len(body)) {
				t.Fatalf("Bytes = %d, want %d", r.Bytes, tc.requests*len(body))
			}
		})
	}
}

// TestRunStopsAtDeadline: a server that never answers ends the run by the
// time limit, and the cut requests are not counted as failures.
func TestRunStopsAtDeadline(t *testing.T) {
	t.Parallel()
	stuck := server(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	r, err := Run(context.Background(), Options{Client: stuck.Client(), URL: stuck.URL, Clients: 2, MaxRequests: 1000, MaxDuration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !r.TimedOut || r.Requests != 0 || r.Errors != 0 {
		t.Fatalf("Run on a stuck server = %+v; want timed out, no requests, no errors", r)
	}
}

func TestRunNeedsBounds(t *testing.T) {
	t.Parallel()
	if _, err := Run(context.Background(), Options{Client: http.DefaultClient, URL: "http://127.0.0.1:1", Clients: 1, MaxRequests: 1}); err == nil {
		t.Fatal("Run without a time limit: no error")
	}
	if _, err := Run(context.Background(), Options{Client: http.DefaultClient, URL: "http://127.0.0.1:1", Clients: 1, MaxDuration: time.Second}); err == nil {
		t.Fatal("Run without a count limit: no error")
	}
}

func TestHerd(t *testing.T) {
	t.Parallel()
	s := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	got, err := Herd(context.Background(), s.Client, s.URL, 8, int64(len(body)), digest(body), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range got {
		if !c.OK || c.Status != 200 || c.Bytes != int64(len(body)) {
			t.Fatalf("client %d = %+v, want the whole body", i, c)
		}
	}
	got, _ = Herd(context.Background(), s.Client, s.URL, 2, int64(len(body)), digest([]byte("other")), time.Minute)
	if got[0].OK || got[0].Err != "wrong sha256" {
		t.Fatalf("herd with a wrong digest: %+v", got[0])
	}
	if _, err := Herd(context.Background(), s.Client, s.URL, 0, 1, "", time.Minute); err == nil {
		t.Fatal("empty herd: no error")
	}
}

func TestRates(t *testing.T) {
	t.Parallel()
	r := Result{Requests: 50, Bytes: 2e6, Elapsed: 2 * time.Second}
	if r.MBps() != 1 || r.RPS() != 25 || (Result{}).MBps() != 0 {
		t.Fatalf("MBps %v, RPS %v", r.MBps(), r.RPS())
	}
}
