package swarm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// FuzzParseTorrentFile feeds arbitrary peer-supplied .torrent bytes to the
// parser: it must never panic, must fail with an error naming the digest,
// and whatever it accepts must be the canonical info for (digest, size).
func FuzzParseTorrentFile(f *testing.F) {
	data := randomBytes(600<<10, 30)
	digest := digestOf(data)
	info, err := buildInfo(bytes.NewReader(data), digest, int64(len(data)))
	if err != nil {
		f.Fatal(err)
	}
	good, err := encodeTorrentFile(info)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, uint32(len(data)))
	f.Add(good, uint32(len(data)+1))
	f.Add(good[:len(good)/2], uint32(len(data)))
	f.Add([]byte("d4:infod6:lengthi5e4:name1:x12:piece lengthi1e6:pieces0:ee"), uint32(5))
	f.Add([]byte("d4:infoi1ee"), uint32(5))
	f.Add([]byte("le"), uint32(5))
	f.Add([]byte("d4:info"), uint32(5))
	f.Add([]byte("i99999999999999999999999e"), uint32(5))
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, size32 uint32) {
		size := int64(size32)
		infoBytes, ih, err := ParseTorrentFile(b, digest, size)
		if err != nil {
			if !strings.Contains(err.Error(), digest) {
				t.Errorf("error does not name the digest: %v", err)
			}
			if size > 0 && int64(len(b)) <= maxTorrentFileSize(size) && !errors.Is(err, ErrBadMetainfo) {
				t.Errorf("error for peer data does not wrap ErrBadMetainfo: %v", err)
			}
			return
		}
		if ih != metainfo.HashBytes(infoBytes) {
			t.Fatal("infohash is not the SHA-1 of the info bytes")
		}
		var i metainfo.Info
		if err := bencode.Unmarshal(infoBytes, &i); err != nil {
			t.Fatal(err)
		}
		if i.Name != digest || i.Length != size || i.PieceLength != PieceLength(size) || i.Private != nil || len(i.Files) != 0 {
			t.Fatalf("accepted non-canonical info %+v", i)
		}
		again, err := canonicalInfo(digest, size, i.Pieces)
		if err != nil || !bytes.Equal(again, infoBytes) {
			t.Fatal("accepted info bytes that are not canonical")
		}
	})
}
