package rpmsig

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Bounds of rpm headers. rpm itself accepts a main header of up to 256 MiB
// of data and a signature header of up to 64 MiB (lib/header.c, hdrchkData
// and the signature header's dl_max); a package whose header is a few
// hundred bytes long can claim that much. Real headers are far smaller:
// one file costs some 150-300 bytes of header (name, directory index,
// digest, mode, size, times, owner, flags...), so the largest packages
// (TeX Live trees, kernel sources, about 100,000 files) have main headers
// of some tens of MiB at most, most packages well under 1 MiB; signature
// headers hold a few signatures, or one IMA signature per file
// (Fedora, ~200 bytes each).
const (
	// MaxHeaderSize bounds one header (its index and data); larger ones
	// are refused with an error wrapping ErrMalformed and
	// repoindex.ErrTooLarge before they are read.
	MaxHeaderSize = 32 << 20
	// MaxHeaderMemory bounds the memory held by the headers of all
	// verifications running at once in the process. A verification
	// waits (see VerifyContext) until its header fits.
	MaxHeaderMemory = 64 << 20
	// exactUpTo: a header up to this size is read into a buffer of its
	// claimed size. A bigger one grows its buffer as bytes arrive, so a
	// short file with a lying intro costs little, and is charged twice its
	// size (a growing buffer and its copy).
	exactUpTo = 4 << 20
	// maxSigPacket bounds one OpenPGP signature kept from the signature
	// header; a signature packet is some hundred bytes (RSA 4096: 540;
	// post-quantum ML-DSA: under 5 KiB).
	maxSigPacket = 64 << 10
)

// headerBudget is shared by every verification in the process: bounding
// the memory of each is not enough when a node verifies many rpms at once
// (four with 256 MiB headers took 1.6 GB before it).
var headerBudget = newBudget(MaxHeaderMemory)

// budget is a weighted semaphore that remembers the most it ever lent,
// for tests.
type budget struct {
	size  int64
	sem   *semaphore.Weighted
	inUse atomic.Int64
	peak  atomic.Int64
}

func newBudget(size int64) *budget {
	return &budget{size: size, sem: semaphore.NewWeighted(size)}
}

// charge is what a header of n bytes (index and data) costs the budget.
func charge(n int64) int64 {
	if n <= exactUpTo {
		return n
	}
	return 2 * n
}

// acquire waits until n bytes of the budget are free or ctx is done. A
// caller holds at most one acquisition at a time, so waiters cannot
// deadlock each other.
func (b *budget) acquire(ctx context.Context, n int64) error {
	if n > b.size {
		return fmt.Errorf("%d bytes exceed the whole budget of %d", n, b.size)
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		return fmt.Errorf("waiting for %d bytes of rpm header memory (%d MiB are shared by all verifications in this process): %w", n, b.size>>20, err)
	}
	u := b.inUse.Add(n)
	for {
		p := b.peak.Load()
		if u <= p || b.peak.CompareAndSwap(p, u) {
			break
		}
	}
	return nil
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.inUse.Add(-n)
	b.sem.Release(n)
}
