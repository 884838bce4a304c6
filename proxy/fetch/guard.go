package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// guard cuts a source that stops sending: nothing for stall, or (when
// minRate > 0) fewer than minRate bytes in a window. Cutting cancels the
// attempt's context and closes the body, which unblocks a pending Read; the
// cause is ErrStalled or ErrTooSlow.
type guard struct {
	r       io.ReadCloser
	stall   time.Duration
	minRate int64
	window  time.Duration
	cancel  context.CancelCauseFunc

	n     atomic.Int64 // bytes read
	last  atomic.Int64 // unix nanos of the last byte (or the start)
	cause atomic.Pointer[error]
	stop  chan struct{}
	once  sync.Once
}

func newGuard(r io.ReadCloser, stall time.Duration, minRate int64, window time.Duration, cancel context.CancelCauseFunc) *guard {
	g := &guard{r: r, stall: stall, minRate: minRate, window: window, cancel: cancel, stop: make(chan struct{})}
	g.last.Store(time.Now().UnixNano())
	go g.watch()
	return g
}

func (g *guard) watch() {
	tick := g.stall / 5
	if g.minRate > 0 {
		tick = min(tick, g.window/5)
	}
	tick = max(tick, 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	windowStart, windowBytes := time.Now(), int64(0)
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			if idle := now.Sub(time.Unix(0, g.last.Load())); idle >= g.stall {
				g.cut(fmt.Errorf("%w: no byte for %v", ErrStalled, g.stall))
				return
			}
			if g.minRate <= 0 || now.Sub(windowStart) < g.window {
				continue
			}
			n := g.n.Load()
			if got := n - windowBytes; got < g.minRate {
				g.cut(fmt.Errorf("%w: %d bytes in %v, fewer than the %d required", ErrTooSlow, got, g.window, g.minRate))
				return
			}
			windowStart, windowBytes = now, n
		}
	}
}

func (g *guard) cut(err error) {
	g.cause.Store(&err)
	g.cancel(err)
	g.r.Close()
}

func (g *guard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if n > 0 {
		g.n.Add(int64(n))
		g.last.Store(time.Now().UnixNano())
	}
	if err != nil && err != io.EOF {
		if c := g.cause.Load(); c != nil {
			err = fmt.Errorf("%w (%v)", *c, err)
		}
	}
	return n, err
}

// Close stops the guard and closes the body.
func (g *guard) Close() error {
	g.once.Do(func() { close(g.stop) })
	return g.r.Close()
}

// finish closes the body after an attempt and returns err, replaced by the
// guard's cause when it cut the source.
func (g *guard) finish(body *Body, err error) error {
	body.Close()
	g.cancel(nil)
	if c := g.cause.Load(); c != nil && err != nil && !errors.Is(err, *c) {
		return fmt.Errorf("%w (%v)", *c, err)
	}
	return err
}

// discard reads and drops n bytes.
func discard(r io.Reader, n int64) error {
	_, err := io.CopyN(io.Discard, r, n)
	return err
}
