package store

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// countingArg counts how often a log call formats it.
type countingArg struct{ n *int }

func (c countingArg) String() string { *c.n++; return "arg" }

// TestBadgerLogFormatsOnlyWhatIsLogged: badger's debug and info lines (one
// per index write batch) cost no formatting when the node does not log at
// debug, and reach the log, trimmed and prefixed, when it does.
func TestBadgerLogFormatsOnlyWhatIsLogged(t *testing.T) {
	var out bytes.Buffer
	formatted := 0
	arg := countingArg{&formatted}
	quiet := badgerLogger{slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	quiet.Debugf("writeRequests called %v\n", arg)
	quiet.Infof("replay took %v\n", arg)
	if formatted != 0 || out.Len() != 0 {
		t.Fatalf("at level warn, badger's debug and info lines were formatted %d times and wrote %q", formatted, out.String())
	}
	quiet.Warningf("value log %v\n", arg)
	if formatted != 1 || !strings.Contains(out.String(), `msg="index: value log arg"`) {
		t.Fatalf("a warning: formatted %d times, log %q", formatted, out.String())
	}
	out.Reset()
	loud := badgerLogger{slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	loud.Debugf("writeRequests called %v\n", arg)
	if !strings.Contains(out.String(), `level=DEBUG msg="index: writeRequests called arg"`) {
		t.Fatalf("at level debug, badger's debug line is missing or not trimmed: %q", out.String())
	}
}
