package rpmsig

import (
	"bytes"
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
)

// TestHeaderMemoryShared: verifications running at once share
// MaxHeaderMemory. Four rpms whose main headers hold 20 MiB (charged 40 MiB
// each) all verify, one header at a time, and the heap stays within the
// budget (the rpm bytes themselves are allocated before measuring).
func TestHeaderMemoryShared(t *testing.T) {
	data, keys := bigHeaderRPM(t, 20<<20)
	defer debug.SetGCPercent(debug.SetGCPercent(10)) // measure memory in use, not garbage
	headerBudget.peak.Store(0)
	m := limittest.Start(MaxHeaderMemory + 16<<20)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Verify(bytes.NewReader(data), "big.rpm", keys)
		}()
	}
	wg.Wait()
	m.Check(t, "four rpms with 20 MiB headers")
	for i, err := range errs {
		if err != nil {
			t.Errorf("rpm %d: %v", i, err)
		}
	}
	if p := headerBudget.peak.Load(); p > MaxHeaderMemory || p < 40<<20 {
		t.Errorf("header memory peaked at %d bytes, want 40 MiB..%d", p, MaxHeaderMemory)
	}
	if u := headerBudget.inUse.Load(); u != 0 {
		t.Errorf("%d bytes of header memory still charged after every verification ended", u)
	}
}

// TestHeaderAtTheBound: a main header of exactly MaxHeaderSize verifies;
// one byte more is refused.
func TestHeaderAtTheBound(t *testing.T) {
	data, _ := bigHeaderRPM(t, 1)
	pad := MaxHeaderSize - len(splitRPM(t, data).main.raw) + 1
	data, keys := bigHeaderRPM(t, pad)
	if _, err := Verify(bytes.NewReader(data), "max.rpm", keys); err != nil {
		t.Fatalf("a header of MaxHeaderSize: %v", err)
	}
	data, keys = bigHeaderRPM(t, pad+1)
	if _, err := Verify(bytes.NewReader(data), "over.rpm", keys); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a header of MaxHeaderSize+1: %v, want ErrMalformed", err)
	}
}

// TestHeaderMemoryWaitEndsWithContext: a verification waiting for header
// memory gives up when its context ends, with ctx's error and no sentinel.
func TestHeaderMemoryWaitEndsWithContext(t *testing.T) {
	data, keys := bigHeaderRPM(t, 1<<20)
	if err := headerBudget.acquire(context.Background(), MaxHeaderMemory); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := VerifyContext(ctx, bytes.NewReader(data), "wait.rpm", keys)
	headerBudget.release(MaxHeaderMemory)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("VerifyContext: %v, want context.DeadlineExceeded", err)
	}
	for _, s := range []error{ErrMalformed, ErrUnsigned, ErrUnknownKey, ErrBadSignature, ErrPayloadDigest, ErrMismatch} {
		if errors.Is(err, s) {
			t.Errorf("error %v wraps %v", err, s)
		}
	}
	if _, err := VerifyContext(context.Background(), bytes.NewReader(data), "wait.rpm", keys); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
}

// TestHugeSignaturePacket: only signature packets are kept from the
// signature header, each at most 64 KiB.
func TestHugeSignaturePacket(t *testing.T) {
	data, keys := bigHeaderRPM(t, 1)
	p := splitRPM(t, data)
	huge := p.join(encodeHeader(p.sig, map[uint32]bool{sigTagRSA: true}, []blob{{sigTagRSA, typeBin, make([]byte, maxSigPacket+1)}}), p.main.raw)
	_, err := Verify(bytes.NewReader(huge), "hugesig.rpm", keys)
	if !errors.Is(err, ErrBadSignature) || !errors.Is(err, repoindex.ErrTooLarge) {
		t.Fatalf("Verify: %v, want ErrBadSignature and repoindex.ErrTooLarge", err)
	}
}
