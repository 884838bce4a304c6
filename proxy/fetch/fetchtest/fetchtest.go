package fetchtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Fault is a way for a source to misbehave.
type Fault int

// Faults.
const (
	Good       Fault = iota // serves the file
	DieAt                   // serves the first half, then fails
	Lie                     // serves other bytes of the same length
	Stall                   // serves the first half, then nothing (the connection stays open)
	TooMuch                 // serves the file and more bytes after it
	Nothing                 // does not have the file (not found)
	LieThenDie              // serves other bytes for the first half, then fails
)

var faultNames = [...]string{"good", "dies mid-file", "lies", "stalls", "sends too much", "has nothing", "lies then dies"}

func (f Fault) String() string { return faultNames[f] }

// Faults is every fault, in order.
var Faults = []Fault{Good, DieAt, Lie, Stall, TooMuch, Nothing, LieThenDie}

// Harness wires the source under test, serving content with fault, into a
// pipeline config (cfg.Store, Observer and timeouts are set by the suite),
// ahead of fallback, a good source the suite provides. The harness places
// fallback after the source under test in the tier order that source
// belongs to (e.g. for an origin: the tested origin first, the fallback as
// the next candidate; for a peer tier: Site = [tested], Origin = fallback).
type Harness func(t *testing.T, content []byte, fault Fault, fallback *Static, cfg *fetch.Config)

// StallTimeout is the stall timeout the suite runs with. Under a loaded
// race-detector run a healthy source can pause for 300 ms; a lying source
// cut for a stall is then resumed by the fallback, which is another case.
const StallTimeout = time.Second

// Run runs the conformance suite against a harness.
func Run(t *testing.T, h Harness) {
	for _, fault := range Faults {
		t.Run(fault.String(), func(t *testing.T) {
			t.Parallel()
			content := make([]byte, 300<<10+7)
			r := rand.New(rand.NewPCG(uint64(fault), 7))
			for i := range content {
				content[i] = byte(r.Uint32())
			}
			st, err := store.Open(store.Options{Dir: t.TempDir(), InMemoryIndex: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			fallback := &Static{Label: "fallback", Content: content}
			obs := &Recorder{}
			cfg := fetch.Config{Store: st, Observer: obs, StallTimeout: StallTimeout, MinRate: -1}
			h(t, content, fault, fallback, &cfg)
			f, err := fetch.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(f.Close)
			sum := sha256.Sum256(content)
			exp := repoindex.Expectation{SHA256: sum[:], Size: int64(len(content)), Key: repoindex.DigestKey(sum[:]), Root: "test root"}
			req := &fetch.Request{URL: "http://origin.test/pool/f.deb", Expect: &exp, Peers: true}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := f.Get(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Flight == nil {
				t.Fatal("an empty store answered from the cache")
			}
			if err := res.Flight.Err(); err != nil {
				t.Fatalf("with a source that %s before a good one: %v", fault, err)
			}
			if got := res.Flight.Digest(); got != store.Digest(sum) {
				t.Fatalf("committed %s, want %x", got, sum)
			}
			held, _, err := st.OpenBlob(store.Digest(sum))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(held)
			held.Close()
			if !bytes.Equal(b, content) {
				t.Fatal("the committed blob differs from the file")
			}
			offs := fallback.Offsets()
			switch fault {
			case Good:
				if len(offs) != 0 {
					t.Fatalf("the fallback was asked (offsets %v) though the source served the file", offs)
				}
			case DieAt, Stall:
				if len(offs) != 1 || offs[0] <= 0 || offs[0] >= int64(len(content)) {
					t.Fatalf("fallback asked from offsets %v, want one resume past 0", offs)
				}
			case Lie, TooMuch, Nothing:
				if len(offs) != 1 || offs[0] != 0 {
					t.Fatalf("fallback asked from offsets %v, want one request from 0", offs)
				}
			case LieThenDie:
				// The fallback resumed after the lie, the whole failed, and
				// the fallback was asked again alone: a source that stops
				// after bad bytes must not make the file fail.
				if len(offs) != 2 || offs[0] <= 0 || offs[1] != 0 {
					t.Fatalf("fallback asked from offsets %v, want a resume past 0, then one request from 0", offs)
				}
			}
			blamed := obs.Blamed()
			switch fault {
			case Lie, TooMuch:
				if len(blamed) != 1 || blamed[0] == "fallback" {
					t.Fatalf("verification failures blame %v, want exactly the lying source", blamed)
				}
			case LieThenDie:
				// The failed whole blames both, the source under test
				// first: which one lied is not known.
				if len(blamed) != 2 || blamed[0] == "fallback" {
					t.Fatalf("verification failures blame %v, want the lying source and the fallback that resumed after it", blamed)
				}
			default:
				if len(blamed) != 0 {
					t.Fatalf("verification failures blame %v, want none", blamed)
				}
			}
		})
	}
}

// Static is an in-memory Source serving Content with a Fault. It honours
// Attempt.Offset, and records the offsets it was asked from.
type Static struct {
	Label   string
	Content []byte
	Fault   Fault
	OffsetLog
}

var _ fetch.Source = (*Static)(nil)

// OffsetLog records the offsets a test source is asked from; its zero
// value is ready, and it is safe for concurrent use.
type OffsetLog struct {
	mu      sync.Mutex
	offsets []int64
}

// Add records off and returns how many offsets were asked so far.
func (l *OffsetLog) Add(off int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.offsets = append(l.offsets, off)
	return len(l.offsets)
}

// Offsets lists the offsets recorded, oldest first.
func (l *OffsetLog) Offsets() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.offsets...)
}

// Name implements fetch.Source.
func (s *Static) Name() string { return s.Label }

// Fetch implements fetch.Source.
func (s *Static) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	s.Add(a.Offset)
	body := FaultyBytes(ctx, s.Content, s.Fault)
	if body == nil {
		return nil, fmt.Errorf("%s: %w", s.Label, fetch.ErrNotFound)
	}
	off := min(a.Offset, int64(len(body.b)))
	body.b = body.b[off:]
	if body.cut >= 0 {
		body.cut = max(0, body.cut-int(off))
	}
	return &fetch.Body{ReadCloser: body, Start: off, Size: int64(len(s.Content)), Peer: s.Label}, nil
}

// FaultyBody is a body that misbehaves as its fault says.
type FaultyBody struct {
	ctx   context.Context
	b     []byte
	cut   int  // stop after this many bytes (-1: never)
	stall bool // at the cut, block until closed instead of failing
	done  chan struct{}
	once  sync.Once
}

// ErrDied is what a body that dies mid-file returns.
var ErrDied = errors.New("connection reset by the test")

// FaultyBytes returns the bytes a source with fault serves for content, as a
// body, or nil for Nothing.
func FaultyBytes(ctx context.Context, content []byte, fault Fault) *FaultyBody {
	b := &FaultyBody{ctx: ctx, b: content, cut: -1, done: make(chan struct{})}
	switch fault {
	case DieAt:
		b.cut = len(content) / 2
	case Stall:
		b.cut, b.stall = len(content)/2, true
	case Lie, LieThenDie:
		b.b = bytes.Clone(content)
		for i := range b.b {
			b.b[i] ^= 0x5a
		}
		if fault == LieThenDie {
			b.cut = len(content) / 2
		}
	case TooMuch:
		b.b = append(bytes.Clone(content), []byte("and more")...)
	case Nothing:
		return nil
	}
	return b
}

// Bytes is what the body serves when it does not fail.
func (b *FaultyBody) Bytes() []byte { return b.b }

// Read implements io.Reader.
func (b *FaultyBody) Read(p []byte) (int, error) {
	if b.cut == 0 {
		if b.stall {
			select {
			case <-b.done:
				return 0, errors.New("closed while stalled")
			case <-b.ctx.Done():
				return 0, b.ctx.Err()
			}
		}
		return 0, ErrDied
	}
	if len(b.b) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if b.cut > 0 {
		n = min(n, b.cut)
	}
	n = copy(p[:n], b.b)
	b.b = b.b[n:]
	if b.cut > 0 {
		b.cut -= n
	}
	return n, nil
}

// Close implements io.Closer; it unblocks a stalled Read.
func (b *FaultyBody) Close() error {
	b.once.Do(func() { close(b.done) })
	return nil
}

// Recorder is a fetch.Observer that records what it is told.
type Recorder struct {
	mu       sync.Mutex
	failures []*fetch.VerifyError
	fetched  map[string]int64
}

var _ fetch.Observer = (*Recorder)(nil)

// Fetched implements fetch.Observer.
func (r *Recorder) Fetched(source string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fetched == nil {
		r.fetched = map[string]int64{}
	}
	r.fetched[source] += n
}

// VerifyFailed implements fetch.Observer.
func (r *Recorder) VerifyFailed(e *fetch.VerifyError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, e)
}

// SourceFailed implements fetch.Observer.
func (r *Recorder) SourceFailed(string, string, error) {}

// Failures returns the verification failures seen.
func (r *Recorder) Failures() []*fetch.VerifyError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*fetch.VerifyError(nil), r.failures...)
}

// Blamed lists the sources every verification failure names.
func (r *Recorder) Blamed() []string {
	var out []string
	for _, f := range r.Failures() {
		for _, c := range f.Sources {
			out = append(out, c.Source)
		}
	}
	return out
}

// FetchedFrom returns the bytes fetched from source.
func (r *Recorder) FetchedFrom(source string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fetched[source]
}

// Handler serves content over HTTP with fault, as a real server would
// misbehave: DieAt cuts the connection after half the body (with the full
// Content-Length announced), Lie serves other bytes, Stall sends half and
// then nothing until the client goes away, TooMuch sends more bytes than
// the file has (no Content-Length), Nothing answers 404, LieThenDie serves
// half the body wrong and cuts the connection. HEAD answers
// X-Pkgswarm-State: complete (the peer protocol's "I have it").
func Handler(content []byte, fault Fault) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fault == Nothing {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Pkgswarm-State", "complete")
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
			return
		}
		body := FaultyBytes(r.Context(), content, fault)
		if fault != TooMuch {
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		}
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, 32<<10)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				panic(http.ErrAbortHandler) // cut the connection mid-body
			}
		}
	})
}
