package main

import (
	"fmt"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"io"
	"strings"
	"sync"
	"time"
)

// progressBar draws one self-overwriting line on a terminal:
//
//	prefetch [=========>           ]  45%  12.3 MiB / 27.0 MiB  3.1 MiB/s
//
// It redraws at most every 100 ms. A progressBar on a writer that is not a
// terminal draws nothing: the command's summary line says what happened.
// Its methods are safe for concurrent use.
type progressBar struct {
	w       io.Writer
	label   string
	enabled bool
	start   time.Time

	mu          sync.Mutex // protects the fields below
	done, total int64
	drawn       time.Time
	width       int // length of the last line drawn, to blank it
}

func newProgressBar(w io.Writer, label string, total int64, enabled bool) *progressBar {
	return &progressBar{w: w, label: label, total: total, enabled: enabled, start: time.Now()}
}

// Add records n more bytes done.
func (p *progressBar) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.drawLocked(false)
}

// Set records done of total bytes.
func (p *progressBar) Set(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	p.drawLocked(false)
}

// Finish draws the final state and ends the line.
func (p *progressBar) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled {
		return
	}
	p.drawLocked(true)
	fmt.Fprintln(p.w)
}

func (p *progressBar) drawLocked(force bool) {
	if !p.enabled {
		return
	}
	now := time.Now()
	if !force && now.Sub(p.drawn) < 100*time.Millisecond {
		return
	}
	p.drawn = now
	line := renderProgress(p.label, p.done, p.total, now.Sub(p.start))
	pad := ""
	if n := p.width - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
}

// renderProgress is one line of the bar.
func renderProgress(label string, done, total int64, elapsed time.Duration) string {
	const cells = 24
	frac := 0.0
	if total > 0 {
		frac = min(1, max(0, float64(done)/float64(total)))
	}
	full := int(frac * cells)
	bar := strings.Repeat("=", full)
	if full < cells {
		bar += ">" + strings.Repeat(" ", cells-full-1)
	}
	rate := ""
	if s := elapsed.Seconds(); s > 0.2 {
		rate = "  " + status.FormatBytes(int64(float64(done)/s)) + "/s"
	}
	return fmt.Sprintf("%s [%s] %3.0f%%  %s / %s%s", label, bar, 100*frac, status.FormatBytes(done), status.FormatBytes(total), rate)
}
