package origin

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// pacer is one rate limit on a stream of bytes: a write of n bytes may
// start at next, and moves next on by n/rate. Time the stream spends idle
// earns it no credit (a write never starts before it is made), so a burst
// after a pause is paced like any other: the way a per-connection limit
// of a mirror or a CDN behaves. The zero value is unusable; rate must be
// positive. Not safe for concurrent use.
type pacer struct {
	rate int64 // bytes per second
	next time.Time
}

// cost is how long n bytes take at p's rate.
func (p *pacer) cost(n int) time.Duration {
	return time.Duration(float64(n) / float64(p.rate) * float64(time.Second))
}

// book schedules a write of n bytes made at now under every pacer of ps
// at once: it returns when the write may start (now, or the latest next
// among ps) and moves each pacer's next past the write.
func book(now time.Time, n int, ps ...*pacer) time.Time {
	start := now
	for _, p := range ps {
		if p.next.After(start) {
			start = p.next
		}
	}
	for _, p := range ps {
		p.next = start.Add(p.cost(n))
	}
	return start
}

// sleepUntil waits until t, or returns ctx's error if ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connKey is the request context key of a connection's pacer.
type connKey struct{}

// connPacer is one connection's pacer. net/http serves a connection's
// requests one at a time, in order, so only one handler uses it at once.
type connPacer struct{ p pacer }

// pacedWriter writes a response's body in 64 KiB steps under every pacer
// that applies to it (the response's own rate, its connection's). It has
// no ReadFrom, so a paced body is copied, not sent with sendfile.
type pacedWriter struct {
	http.ResponseWriter
	pacers []*pacer
	ctx    context.Context
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		chunk := min(len(b), 64<<10)
		if err := sleepUntil(p.ctx, book(time.Now(), chunk, p.pacers...)); err != nil {
			return written, errors.New("origin: client went away")
		}
		n, err := p.ResponseWriter.Write(b[:chunk])
		written += n
		if err != nil {
			return written, err
		}
		b = b[chunk:]
	}
	return written, nil
}
