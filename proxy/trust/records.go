package trust

import (
	"container/list"
	"strings"
	"sync"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// The trust package's records in the store. Every key is built here.
//
// Expectations live in one namespace per format: "<format>|<URL>". A lookup
// for a .deb asks the apt namespace only, so no rpm-md or urpmi chain (signed
// or not) can replace, outrank or share what InRelease → Packages recorded
// (DESIGN.md invariant 3a).

func expectKey(f Format, u string) string { return string(f) + "|" + u } // as expect builds it

// expect returns what format f's chain recorded for URL u, or an error
// wrapping store.ErrNotFound. Found records are kept in memory (every hit
// of a cached package asks): writes go through putExpects, which keeps the
// memory copy right.
func (r *Resolver) expect(f Format, u string) (store.Expect, error) {
	// The key is built on the stack for the memory lookup (a URL of a few
	// hundred bytes fits): a kept expectation costs no allocation.
	var buf [384]byte
	kb := append(append(append(buf[:0], f...), '|'), u...)
	if e, ok := r.expects.getBytes(kb); ok {
		return e, nil
	}
	k := string(kb)
	e, err := r.st.GetExpect(k)
	if err == nil {
		r.expects.put(k, e)
	}
	return e, err
}

// putExpects writes expectations and drops the memory copies they replace.
func (r *Resolver) putExpects(batch map[string]store.Expect) error {
	for k := range batch {
		r.expects.drop(k)
	}
	return r.st.PutExpects(batch)
}

// expectCache is a bounded LRU of expectations by key. Safe for concurrent
// use.
type expectCache struct {
	mu  sync.Mutex // protects ll, m
	max int
	ll  *list.List // front: most recently used; values are *expectEntry
	m   map[string]*list.Element
}

type expectEntry struct {
	key string
	e   store.Expect
}

// expectCacheSize bounds the expectations kept in memory (about 200 bytes
// each: a few MiB for the packages of a large upgrade and its indices).
const expectCacheSize = 16384

// getBytes returns the expectation kept under key k (expectKey's bytes).
func (c *expectCache) getBytes(k []byte) (store.Expect, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[string(k)]
	if !ok {
		return store.Expect{}, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*expectEntry).e, true
}

func (c *expectCache) put(k string, e store.Expect) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m, c.ll = map[string]*list.Element{}, list.New()
	}
	if el, ok := c.m[k]; ok {
		el.Value.(*expectEntry).e = e
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(&expectEntry{key: k, e: e})
	if c.ll.Len() > c.max {
		el := c.ll.Back()
		c.ll.Remove(el)
		delete(c.m, el.Value.(*expectEntry).key)
	}
}

func (c *expectCache) drop(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		c.ll.Remove(el)
		delete(c.m, k)
	}
}

// expectation turns a stored record into the pipeline's expectation (the
// only constructor outside repoindex, for records written by repoindex
// values: Release files, Packages, primary lists).
func expectation(e *store.Expect) repoindex.Expectation {
	return repoindex.Expectation{SHA256: e.SHA256[:], Size: e.Size, Key: repoindex.DigestKey(e.SHA256[:]), Root: e.Root}
}

// Metadata keys, per format.
const (
	metaAptIndex     = "aptidx:"        // + index sha256 hex → repo "\x00" path: a Packages/Sources index a root lists
	metaParsed       = "parsed2:"       // + sha256 hex + "|" + scope → 1: the index was parsed into expectations
	metaURPMIPin     = "urpmi:pin:"     // + medium URL → the medium's pubkey as first fetched
	metaURPMIMD5     = "urpmi:md5:"     // + blob sha256 hex → the blob's MD5 (16 bytes)
	metaURPMISynth   = "urpmi:synth:"   // + synthesis sha256 hex → medium URL: a synthesis that matched MD5SUM
	metaRPMMDPrimary = "rpmmd:primary:" // + primary sha256 hex → repository URL
	metaRPMMDRepo    = "rpmmd:repo:"    // + repository URL → the accepted repomd.xml's state (JSON)
)

func aptIndexKey(d store.Digest) string { return metaAptIndex + d.String() }

// known remembers which URL prefixes (apt archives, rpm-md repositories,
// urpmi media) have a trusted chain, so that a file under one that no
// parsed index lists yet is never cached by URL (it could be served later
// without proof).
type known struct {
	mu       sync.RWMutex    // protects prefixes
	prefixes map[string]bool // prefix URL → a signed chain covers it
}

func (k *known) set(prefix string, trusted bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.prefixes == nil {
		k.prefixes = map[string]bool{}
	}
	if trusted || !k.prefixes[prefix] {
		k.prefixes[prefix] = trusted
	}
}

// trusted reports whether a signed chain covers a prefix of u.
func (k *known) trusted(u string) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for p, t := range k.prefixes {
		if t && strings.HasPrefix(u, p+"/") {
			return true
		}
	}
	return false
}

// loadKnown fills r.known from the store: accepted apt roots, signed rpm-md
// repositories, urpmi media with a pinned key.
func (r *Resolver) loadKnown() error {
	roots, err := r.st.Roots()
	if err != nil {
		return err
	}
	for _, rt := range roots {
		r.known.set(archiveRoot(rt.Repo), !rt.Untrusted)
	}
	if err := r.st.ScanMeta(metaRPMMDRepo, func(k string, v []byte) error {
		if st, err := decodeRepomdState(v); err == nil {
			r.known.set(strings.TrimPrefix(k, metaRPMMDRepo), st.Signed)
		}
		return nil
	}); err != nil {
		return err
	}
	return r.st.ScanMeta(metaURPMIPin, func(k string, _ []byte) error {
		r.known.set(strings.TrimPrefix(k, metaURPMIPin), true)
		return nil
	})
}

// batch writes expectations in batches of batchSize.
type batch struct {
	r *Resolver
	m map[string]store.Expect
	n int // entries added
}

const batchSize = 4096

func (r *Resolver) newBatch() *batch {
	return &batch{r: r, m: make(map[string]store.Expect, batchSize)}
}

func (b *batch) add(key string, e store.Expect) error {
	b.m[key] = e
	b.n++
	if len(b.m) >= batchSize {
		return b.flush()
	}
	return nil
}

func (b *batch) flush() error {
	if len(b.m) == 0 {
		return nil
	}
	err := b.r.putExpects(b.m)
	clear(b.m)
	return err
}
