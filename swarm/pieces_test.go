package swarm

import (
	"bytes"
	"crypto/sha1"
	"os"
	"sync/atomic"
	"testing"
)

// The piece hashes computed as a download's bytes arrive, in any chunks and
// after a restart, are the SHA-1 of each piece (computed here slice by
// slice), and they are the ones Seed computes by reading the blob.
func TestPieceHasherMatchesBuildInfo(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, smallPieceLength - 1, smallPieceLength, 3*smallPieceLength + 17, smallFileLimit + 5} {
		data := randomBytes(size, uint64(size))
		hex := digestOf(data)
		pl := int(PieceLength(int64(size)))
		var oracle []byte
		for off := 0; off < size; off += pl {
			h := sha1.Sum(data[off:min(off+pl, size)])
			oracle = append(oracle, h[:]...)
		}
		want, err := canonicalInfo(hex, int64(size), oracle)
		if err != nil {
			t.Fatal(err)
		}
		if read, err := buildInfo(bytes.NewReader(data), hex, int64(size)); err != nil || !bytes.Equal(read, want) {
			t.Fatalf("size %d: buildInfo's info differs from the pieces' SHA-1 (%v)", size, err)
		}
		p := NewPieceHasher(int64(size))
		p.Write(data[:size/3]) // a first source's bytes, then a restart
		if _, ok := p.Pieces(); ok && size > 1 {
			t.Fatalf("size %d: pieces reported after %d bytes", size, size/3)
		}
		p.Reset()
		for off, chunk := 0, 1; off < size; off, chunk = off+chunk, chunk*3+1 {
			p.Write(data[off:min(off+chunk, size)])
		}
		pieces, ok := p.Pieces()
		if !ok {
			t.Fatalf("size %d: no pieces after every byte", size)
		}
		got, err := canonicalInfo(hex, int64(size), pieces)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("size %d: info from the streamed pieces differs from the pieces' SHA-1", size)
		}
	}
}

// countingBlobs counts the opens of its blobs.
type countingBlobs struct {
	*dirBlobs
	opens atomic.Int32
}

func (b *countingBlobs) OpenBlob(hex string) (*os.File, int64, error) {
	b.opens.Add(1)
	return b.dirBlobs.OpenBlob(hex)
}

// A blob primed with its piece hashes is seeded without being read; the
// torrent is the one seeding by reading it makes.
func TestPrimedBlobIsSeededWithoutReadingIt(t *testing.T) {
	t.Parallel()
	blobs := &countingBlobs{dirBlobs: newDirBlobs(t)}
	data := randomBytes(700_000, 41)
	hex := blobs.put(t, data, "")
	size := int64(len(data))

	plain := newNode(t, newDirBlobs(t))
	plain.cfg.Blobs.(*dirBlobs).put(t, data, "")
	if err := plain.Seed(hex, size); err != nil {
		t.Fatal(err)
	}
	wantMagnet, err := plain.Magnet(hex, size)
	if err != nil {
		t.Fatal(err)
	}

	n := newNode(t, blobs)
	p := NewPieceHasher(size)
	p.Write(data)
	pieces, _ := p.Pieces()
	if err := n.PrimeInfo(hex, size, pieces[:len(pieces)-1]); err == nil {
		t.Fatal("PrimeInfo took piece hashes of the wrong length")
	}
	if err := n.PrimeInfo(hex, size, pieces); err != nil {
		t.Fatal(err)
	}
	if err := n.Seed(hex, size); err != nil {
		t.Fatal(err)
	}
	if got := blobs.opens.Load(); got != 0 {
		t.Fatalf("seeding a primed blob opened it %d times", got)
	}
	m, err := n.Magnet(hex, size)
	if err != nil {
		t.Fatal(err)
	}
	if ih, wantIH := m[:len("magnet:?xt=urn:btih:")+40], wantMagnet[:len("magnet:?xt=urn:btih:")+40]; ih != wantIH {
		t.Fatalf("primed torrent %s, want %s", ih, wantIH)
	}
	// The info is cached as if it had been computed: a restart needs no hashing either.
	if _, err := os.Stat(n.infoPath(hex)); err != nil {
		t.Fatalf("the primed info was not cached: %v", err)
	}
}

// Primed infos wait for Seed in a bounded set, the oldest dropped first.
func TestPrimedInfosAreBounded(t *testing.T) {
	t.Parallel()
	var q primedInfos
	names := make([]string, maxPrimed+1)
	for i := range names {
		names[i] = digestOf([]byte{byte(i)})
		q.put(names[i], []byte{byte(i)})
	}
	if q.take(names[0]) != nil {
		t.Fatal("the oldest primed info was kept past the bound")
	}
	for _, h := range names[1:] {
		if q.take(h) == nil {
			t.Fatalf("primed info %s dropped within the bound", h)
		}
	}
	if len(q.info) != 0 || len(q.order) != 0 {
		t.Fatalf("taken infos left %d entries, %d in order", len(q.info), len(q.order))
	}
}

// BenchmarkPieceHasher is the cost of a blob's piece hashes per byte (SHA-1),
// which the download now pays as it goes instead of the first Seed paying it
// by reading the whole blob:
//
//	go test ./swarm -run '^$' -bench PieceHasher
func BenchmarkPieceHasher(b *testing.B) {
	const size = 64 << 20
	data := randomBytes(size, 9)
	b.SetBytes(size)
	for b.Loop() {
		p := NewPieceHasher(size)
		for off := 0; off < size; off += 256 << 10 {
			p.Write(data[off : off+256<<10])
		}
		if _, ok := p.Pieces(); !ok {
			b.Fatal("no pieces after every byte")
		}
	}
}
