// Package limittest helps the tests of repoindex check that a parser stays
// within a memory budget whatever its input: a Meter samples the heap while
// a parser runs, and its Reader makes an unbounded parser fail (instead of
// exhausting the machine) once the heap has grown past the budget; Bomb
// builds small compressed files that expand to huge ones.
//
// It is for tests only. The heap is what the Go runtime reports for the
// whole process ("/memory/classes/heap/objects:bytes": live objects and
// garbage not yet swept), so a measured test must not run in parallel with
// others.
package limittest

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ErrOverBudget is returned by a Meter's Reader once the heap has grown
// past the budget.
var ErrOverBudget = errors.New("limittest: heap grew past the memory budget")

const (
	heapObjects = "/memory/classes/heap/objects:bytes"
	heapAllocs  = "/gc/heap/allocs:bytes"
)

func read() (heap, allocs uint64) {
	s := []metrics.Sample{{Name: heapObjects}, {Name: heapAllocs}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// Meter measures the heap growth and the bytes allocated while code runs.
type Meter struct {
	budget    uint64
	base      uint64 // heap in use at Start, after a GC
	allocBase uint64
	peak      atomic.Uint64 // highest heap in use seen, minus base
	stop      chan struct{}
	done      chan struct{}
	once      sync.Once
	alloc     uint64
}

// Start collects garbage, then samples the heap every millisecond until
// Stop. budget is the growth of the heap in use above the level at Start
// that Check and Reader accept.
func Start(budget uint64) *Meter {
	runtime.GC()
	m := &Meter{budget: budget, stop: make(chan struct{}), done: make(chan struct{})}
	m.base, m.allocBase = read()
	go func() {
		defer close(m.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
				m.sample()
			}
		}
	}()
	return m
}

// sample records the heap in use and returns its growth over the base.
func (m *Meter) sample() uint64 {
	h, _ := read()
	var g uint64
	if h > m.base {
		g = h - m.base
	}
	for {
		p := m.peak.Load()
		if g <= p || m.peak.CompareAndSwap(p, g) {
			return g
		}
	}
}

// Stop ends sampling and returns the peak heap growth and the bytes
// allocated since Start.
func (m *Meter) Stop() (peak, alloc uint64) {
	m.once.Do(func() {
		m.sample()
		close(m.stop)
		<-m.done
		_, a := read()
		m.alloc = a - m.allocBase
	})
	return m.peak.Load(), m.alloc
}

// Check stops m and fails t when the heap grew past the budget; it logs
// the peak growth and the bytes allocated either way.
func (m *Meter) Check(t testing.TB, what string) (peak, alloc uint64) {
	t.Helper()
	peak, alloc = m.Stop()
	t.Logf("%s: heap grew by at most %s (budget %s), %s allocated", what, MiB(peak), MiB(m.budget), MiB(alloc))
	if peak > m.budget {
		t.Errorf("%s: heap grew by %s, over the budget of %s", what, MiB(peak), MiB(m.budget))
	}
	return peak, alloc
}

// Reader returns r, failing every read with ErrOverBudget once the heap
// has grown past the budget, so that a test of a parser without a bound
// stops early instead of taking all of the machine's memory.
func (m *Meter) Reader(r io.Reader) io.Reader { return &guard{m: m, r: r} }

type guard struct {
	m *Meter
	r io.Reader
}

func (g *guard) Read(p []byte) (int, error) {
	if g.m.sample() > g.m.budget {
		return 0, fmt.Errorf("%w (%s)", ErrOverBudget, MiB(g.m.budget))
	}
	return g.r.Read(p)
}

// MiB formats a byte count in MiB.
func MiB(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Allocs returns the bytes allocated (by the whole process) while fn ran,
// for fuzz targets that bound what a parser allocates for its input.
func Allocs(fn func()) uint64 {
	_, before := read()
	fn()
	_, after := read()
	return after - before
}
