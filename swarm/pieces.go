package swarm

import (
	"crypto/sha1"
	"fmt"
	"hash"
	"sync"
)

// PieceHasher computes a blob's torrent piece hashes from its bytes as they
// are written (a store.Tee on the download), so that seeding the blob after
// it committed needs no second read of the file and no burst of hashing:
// see Node.PrimeInfo. Write takes the bytes in order from the first; Reset
// starts over. It is not safe for concurrent use (the store's Writer calls
// it under its own lock).
type PieceHasher struct {
	size, pl int64
	n        int64 // bytes written
	h        hash.Hash
	pieces   []byte
}

// NewPieceHasher returns a PieceHasher for a blob of size bytes.
func NewPieceHasher(size int64) *PieceHasher {
	return &PieceHasher{size: size, pl: PieceLength(size), h: sha1.New(),
		pieces: make([]byte, 0, numPieces(size)*sha1.Size)}
}

// Write hashes p. Bytes past the blob's size are ignored (the download then
// fails its own size check).
func (p *PieceHasher) Write(b []byte) (int, error) {
	written := len(b)
	b = b[:min(int64(len(b)), max(0, p.size-p.n))]
	for len(b) > 0 {
		k := min(int64(len(b)), p.pl-p.n%p.pl)
		p.h.Write(b[:k])
		b, p.n = b[k:], p.n+k
		if p.n%p.pl == 0 || p.n == p.size {
			p.pieces = p.h.Sum(p.pieces)
			p.h.Reset()
		}
	}
	return written, nil
}

// Reset forgets every byte written.
func (p *PieceHasher) Reset() {
	p.n = 0
	p.h.Reset()
	p.pieces = p.pieces[:0]
}

// Pieces returns the concatenated piece hashes once all size bytes were
// written.
func (p *PieceHasher) Pieces() ([]byte, bool) {
	if p.n != p.size || p.size <= 0 {
		return nil, false
	}
	return p.pieces, true
}

// Seeds reports whether the node would seed a blob of size bytes (the swarm
// is on and the blob is not below Config.MinSize).
func (n *Node) Seeds(size int64) bool { return n.cl != nil && size >= n.minSize }

// maxPrimed bounds the primed infos a node keeps for blobs not seeded yet.
const maxPrimed = 64

// primedInfos holds info dicts built from piece hashes computed during the
// download, until Seed takes them; the oldest goes first past maxPrimed.
type primedInfos struct {
	mu    sync.Mutex
	info  map[string][]byte
	order []string
}

func (q *primedInfos) put(hexDigest string, info []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.info == nil {
		q.info = map[string][]byte{}
	}
	if _, ok := q.info[hexDigest]; !ok {
		q.order = append(q.order, hexDigest)
	}
	q.info[hexDigest] = info
	for len(q.order) > maxPrimed {
		delete(q.info, q.order[0])
		q.order = q.order[1:]
	}
}

func (q *primedInfos) take(hexDigest string) []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	info, ok := q.info[hexDigest]
	if !ok {
		return nil
	}
	delete(q.info, hexDigest)
	for i, h := range q.order {
		if h == hexDigest {
			q.order = append(q.order[:i], q.order[i+1:]...)
			break
		}
	}
	return info
}

// PrimeInfo hands the node the piece hashes of a verified blob, computed
// while it was downloaded (PieceHasher): its first Seed then builds the
// torrent from them instead of reading and hashing the whole file. The
// caller vouches that pieces were computed over exactly the bytes that
// hash to hexDigest; at most maxPrimed blobs are held until seeded.
func (n *Node) PrimeInfo(hexDigest string, size int64, pieces []byte) error {
	if n.cl == nil {
		return nil
	}
	if int64(len(pieces)) != numPieces(size)*sha1.Size {
		return fmt.Errorf("priming torrent info for sha256:%s: %d bytes of piece hashes, want %d", hexDigest, len(pieces), numPieces(size)*sha1.Size)
	}
	info, err := canonicalInfo(hexDigest, size, pieces)
	if err != nil {
		return err
	}
	n.primed.put(hexDigest, info)
	return nil
}
