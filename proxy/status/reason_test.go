package status

import (
	"strings"
	"testing"
	"time"
)

func TestStatusLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code   int
		reason string
		want   string
	}{
		{404, "", "404 Not Found"},
		{504, "pkgswarm: offline: origins are not contacted", "504 Gateway Timeout: offline: origins are not contacted"},
		{403, "a\r\nb\x00c\tdé", "403 Forbidden: a b c d"},
		{599, "x", "599 Status 599: x"},
	} {
		if got := StatusLine(tc.code, tc.reason); got != tc.want {
			t.Errorf("StatusLine(%d, %q) = %q, want %q", tc.code, tc.reason, got, tc.want)
		}
	}
	long := StatusLine(502, strings.Repeat("verification failed ", 40))
	if len(long) > 4+maxReasonLen || !strings.HasSuffix(long, "...") {
		t.Errorf("a long reason gives a %d-byte line: %q", len(long), long)
	}
}

func TestLogLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	l := &logLimiter{now: func() time.Time { return now }, every: time.Minute}
	if ok, _ := l.allow("denied"); !ok {
		t.Fatal("the first line is held back")
	}
	for range 5 {
		if ok, _ := l.allow("denied"); ok {
			t.Fatal("a line within the minute let through")
		}
	}
	if ok, _ := l.allow("failed"); !ok {
		t.Fatal("another kind is held back")
	}
	now = now.Add(time.Minute)
	if ok, skipped := l.allow("denied"); !ok || skipped != 5 {
		t.Fatalf("after a minute: %v, %d skipped; want a line saying 5", ok, skipped)
	}
}
