package origin

import (
	"time"
)

// Spreading requests over connections helps when the origin paces each
// connection (many mirrors and CDNs do) and hurts when the connections
// share one bottleneck (the node's uplink): the file the client waits for
// next then shares the link with the files behind it, while apt alone,
// pipelining in order on one connection, gets the link for each file in
// turn. Measured (docs/benchmarks.md, 180 packages, origin 40 ms away
// behind a 100 Mbit/s link): four connections 3.39 s, one 3.02 s, direct apt
// 3.02 s; with each connection paced to 10 MB/s, four connections need
// less than half of direct apt's time on its one.
//
// So a host's requests go in order on one connection (apt's way) while a
// probe measures the rate it gets once warmed up, then spread over two
// connections for as long again; if that gave spreadGain times the rate or
// more the host stays spread (over up to maxConns), else it goes back to one
// connection. The decision holds for probeEvery, then the probe runs again.
//
// The phases advance when the pool hands out requests (dispatchLocked),
// which it does at every answer: a host with little traffic stays in order,
// as apt would.

const (
	// probeRTTs is how many round trips each phase runs before it measures,
	// and then measures, at least: new connections start slowly (TCP slow
	// start: about six round trips to fill a 100 Mbit/s link 40 ms away),
	// and a phase measured from its first byte took one slow connection for
	// a slow link. The round trip is the host's quickest first answer on a
	// new connection (connect to header).
	probeRTTs = 8
	// The phases' bounds, whatever the round trip.
	minWarmup, maxWarmup = 20 * time.Millisecond, 400 * time.Millisecond
	minWindow, maxWindow = 100 * time.Millisecond, 400 * time.Millisecond
	// probeMinBytes is how much each phase must have read to count.
	probeMinBytes = 1 << 20
	// probeConns is how many connections the spread phase uses: two tell
	// a per-connection pace (twice the rate) from a shared link (the same)
	// and delay the file the client waits for less than four would.
	probeConns = 2
	// spreadGain is how much more several connections must carry than one
	// for requests to be spread.
	spreadGain = 1.5
	// probeEvery is how long a decision holds.
	probeEvery = 10 * time.Minute
)

type probePhase int

const (
	probeOne  probePhase = iota // in order on one connection, measuring
	probeMany                   // spread, measuring
	probeDone                   // decided: spread or not
)

// spreadProbe is a host's probe. Protected by pipeTransport.mu, except that
// host.read counts without it.
type spreadProbe struct {
	phase    probePhase
	spread   bool      // the decision (probeDone)
	start    time.Time // the phase's first byte; zero until then
	from     time.Time // start of the measurement, probeWarmup after start; zero until then
	bytes0   int64     // host.read at start, then at from
	oneRate  float64   // bytes/s in order on one connection
	manyRate float64   // bytes/s spread
	until    time.Time // when the decision ends
}

// ordered reports whether h's requests go in order on one connection now,
// advancing the probe first.
func (h *host) ordered(now time.Time) bool {
	p := &h.probe
	read := h.read.Load()
	switch {
	case p.phase == probeDone:
		if now.After(p.until) {
			*p = spreadProbe{bytes0: read}
		}
	case p.start.IsZero():
		if read > p.bytes0 {
			p.start, p.bytes0 = now, read
		}
	case p.from.IsZero():
		if now.Sub(p.start) >= h.probeSpan(minWarmup, maxWarmup) {
			p.from, p.bytes0 = now, read
		}
	case now.Sub(p.from) >= h.probeSpan(minWindow, maxWindow) && read-p.bytes0 >= probeMinBytes:
		rate := float64(read-p.bytes0) / now.Sub(p.from).Seconds()
		if p.phase == probeOne {
			p.oneRate = rate
			p.phase, p.start, p.from, p.bytes0 = probeMany, time.Time{}, time.Time{}, read
		} else {
			p.manyRate = rate
			p.spread = rate >= spreadGain*p.oneRate
			p.phase, p.until = probeDone, now.Add(probeEvery)
		}
	}
	switch p.phase {
	case probeOne:
		return true
	case probeMany:
		return false
	default:
		return !p.spread
	}
}

// probeSpan is probeRTTs round trips of h, within [lo, hi]; hi while no
// round trip was seen.
func (h *host) probeSpan(lo, hi time.Duration) time.Duration {
	if h.rtt <= 0 {
		return hi
	}
	return min(max(probeRTTs*h.rtt, lo), hi)
}

// noteFirstAnswer records how long a new connection took from connect to
// its first answer's header.
func (h *host) noteFirstAnswer(d time.Duration) {
	if h.rtt <= 0 || d < h.rtt {
		h.rtt = max(d, time.Microsecond)
	}
}

// proving reports whether one of h's connections is being dialed or waits
// for its first answer: in order, a request waits for it rather than open
// another connection.
func (h *host) proving() bool {
	for _, pc := range h.conns {
		if !pc.closing && !pc.proven && (pc.nc == nil || len(pc.inflight) > 0) {
			return true
		}
	}
	return false
}
