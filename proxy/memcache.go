package proxy

import (
	"container/list"
	"io"
	"os"
	"sync"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// Small hot files (most .debs of an upgrade, every index) are answered from
// memory: a hit then costs no open, stat, read or close, only the writes of
// the answer. Blobs are content-addressed and never change, so a cached copy
// is always right, whatever the store does with the file meanwhile.

const (
	// memEntryMax is the largest blob kept in memory.
	memEntryMax = 64 << 10
	// defaultMemCache is the memory cache's bound when Config.MemoryCache
	// is zero.
	defaultMemCache = 16 << 20
)

// memCache is a byte-bounded LRU of small blobs. The zero value is not
// ready: use newMemCache. Safe for concurrent use.
type memCache struct {
	mu   sync.Mutex // protects the fields below
	max  int64
	size int64
	ll   *list.List // front: most recently used; values are *memEntry
	m    map[store.Digest]*list.Element
}

type memEntry struct {
	d    store.Digest
	data []byte
}

func newMemCache(max int64) *memCache {
	return &memCache{max: max, ll: list.New(), m: map[store.Digest]*list.Element{}}
}

// get returns the bytes of blob d, if held.
func (c *memCache) get(d store.Digest) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[d]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*memEntry).data, true
}

// put keeps data as blob d, evicting the least recently used blobs past the
// bound. The caller must not change data afterwards.
func (c *memCache) put(d store.Digest, data []byte) {
	if c == nil || int64(len(data)) > memEntryMax || int64(len(data)) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[d]; ok {
		return
	}
	c.m[d] = c.ll.PushFront(&memEntry{d: d, data: data})
	c.size += int64(len(data))
	for c.size > c.max {
		el := c.ll.Back()
		e := el.Value.(*memEntry)
		c.ll.Remove(el)
		delete(c.m, e.d)
		c.size -= int64(len(e.data))
	}
}

// remember reads blob d (size bytes, from f) into the memory cache when it
// is small enough, and returns its bytes. It reports false, having perhaps
// read part of f, for a larger blob, with the cache off, or on a read error.
func (s *Server) remember(d store.Digest, f *os.File, size int64) ([]byte, bool) {
	if s.mem == nil || size > memEntryMax {
		return nil, false
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, false
	}
	s.mem.put(d, data)
	return data, true
}
