package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Options describes one load run.
type Options struct {
	Client *http.Client // required; its transport should keep Clients connections alive
	URL    string       // required
	// Clients is the number of concurrent clients (goroutines), each with
	// one request in flight.
	Clients int
	// MaxRequests bounds the total requests started; MaxDuration bounds the
	// run's wall time (requests in flight are cancelled at the deadline and
	// their bytes still count). Both must be positive.
	MaxRequests int
	MaxDuration time.Duration
	// WantSize, when positive, makes a body of another length an error.
	WantSize int64
	// WantSHA256, when set, makes a body with another digest an error
	// (costs a hash per body).
	WantSHA256 string
}

// Result sums a run.
type Result struct {
	Clients   int
	Requests  int   // completed with the expected status, size and digest
	Errors    int   // failed requests (status, size, digest or transport)
	Bytes     int64 // body bytes received, including failed and cut requests
	Elapsed   time.Duration
	FirstErr  string
	TimedOut  bool // the deadline, not the count, ended the run
	Latencies []time.Duration
}

// MBps is the aggregate body throughput in MB/s (10^6 bytes).
func (r Result) MBps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
}

// RPS is completed requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Run runs the load described by o.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Client == nil || o.URL == "" || o.Clients <= 0 || o.MaxRequests <= 0 || o.MaxDuration <= 0 {
		return Result{}, errors.New("load: Client, URL, Clients, MaxRequests and MaxDuration are all required")
	}
	ctx, cancel := context.WithTimeout(ctx, o.MaxDuration)
	defer cancel()
	var (
		started atomic.Int64
		mu      sync.Mutex
		res     = Result{Clients: o.Clients}
		wg      sync.WaitGroup
		begin   = time.Now()
	)
	for range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h hash.Hash
			if o.WantSHA256 != "" {
				h = sha256.New()
			}
			buf := make([]byte, 256<<10)
			for started.Add(1) <= int64(o.MaxRequests) && ctx.Err() == nil {
				t0 := time.Now()
				n, err := fetch(ctx, o, h, buf)
				lat := time.Since(t0)
				mu.Lock()
				res.Bytes += n
				switch {
				case err == nil:
					res.Requests++
					res.Latencies = append(res.Latencies, lat)
				case ctx.Err() != nil:
					// cut by the deadline: not a failure
				default:
					res.Errors++
					if res.FirstErr == "" {
						res.FirstErr = err.Error()
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(begin)
	res.TimedOut = ctx.Err() != nil
	return res, nil
}

// fetch does one GET and checks it; it returns the body bytes read. buf
// is the read buffer: large, so that reading costs the client few system
// calls (io.Discard's ReadFrom reads 8 KiB at a time).
func fetch(ctx context.Context, o Options, h hash.Hash, buf []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if h != nil {
		h.Reset()
	}
	n, err := readAll(resp.Body, h, buf)
	if err != nil {
		return n, fmt.Errorf("GET %s: body cut after %d bytes: %w", o.URL, n, err)
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("GET %s: status %s", o.URL, resp.Status)
	}
	if o.WantSize > 0 && n != o.WantSize {
		return n, fmt.Errorf("GET %s: %d bytes, want %d", o.URL, n, o.WantSize)
	}
	if h != nil {
		if got := hex.EncodeToString(h.Sum(nil)); got != o.WantSHA256 {
			return n, fmt.Errorf("GET %s: sha256 %s, want %s", o.URL, got, o.WantSHA256)
		}
	}
	return n, nil
}

// readAll reads r to its end through buf, feeding h when it is not nil.
func readAll(r io.Reader, h hash.Hash, buf []byte) (int64, error) {
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if h != nil && m > 0 {
			h.Write(buf[:m])
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// HerdClient is what one client of a herd got.
type HerdClient struct {
	Status  int
	Bytes   int64
	OK      bool // status 200, size and digest as expected
	Elapsed time.Duration
	Err     string
}

// Herd starts n clients on url at the same instant, each on its own
// connection, each allowed at most timeout, and reports each one.
func Herd(ctx context.Context, newClient func() *http.Client, url string, n int, wantSize int64, wantSHA256 string, timeout time.Duration) ([]HerdClient, error) {
	if n <= 0 || timeout <= 0 {
		return nil, errors.New("load: a herd needs n > 0 clients and a timeout")
	}
	out := make([]HerdClient, n)
	var ready, done sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			c := newClient()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
			ready.Done()
			<-gate
			t0 := time.Now()
			hc := HerdClient{}
			defer func() { hc.Elapsed = time.Since(t0); out[i] = hc }()
			if err != nil {
				hc.Err = err.Error()
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				hc.Err = err.Error()
				return
			}
			defer resp.Body.Close()
			hc.Status = resp.StatusCode
			h := sha256.New()
			hc.Bytes, err = io.Copy(h, resp.Body)
			switch {
			case err != nil:
				hc.Err = fmt.Sprintf("body cut after %d bytes: %v", hc.Bytes, err)
			case resp.StatusCode != http.StatusOK:
				hc.Err = "status " + resp.Status
			case hc.Bytes != wantSize:
				hc.Err = fmt.Sprintf("%d bytes, want %d", hc.Bytes, wantSize)
			case hex.EncodeToString(h.Sum(nil)) != wantSHA256:
				hc.Err = "wrong sha256"
			default:
				hc.OK = true
			}
		}()
	}
	ready.Wait()
	close(gate)
	done.Wait()
	return out, nil
}
