package swarm

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// Piece lengths, fixed so that every holder of a file derives the same info
// dict and therefore the same infohash. Changing this table splits the swarm:
// it is part of the protocol (namespace "pkgswarm/v1").
//
//	size ≤ 64 MiB  → 256 KiB pieces (≤ 256 pieces: most packages are far smaller)
//	size ≤ 1 GiB   → 1 MiB pieces   (≤ 1024 pieces)
//	size > 1 GiB   → 4 MiB pieces
const (
	smallPieceLength  = 256 << 10
	mediumPieceLength = 1 << 20
	largePieceLength  = 4 << 20

	smallFileLimit  = 64 << 20
	mediumFileLimit = 1 << 30
)

// PieceLength returns the piece length pkgswarm uses for a blob of size bytes.
func PieceLength(size int64) int64 {
	switch {
	case size <= smallFileLimit:
		return smallPieceLength
	case size <= mediumFileLimit:
		return mediumPieceLength
	default:
		return largePieceLength
	}
}

// numPieces is the number of pieces of a blob of size bytes.
func numPieces(size int64) int64 {
	pl := PieceLength(size)
	return (size + pl - 1) / pl
}

// RendezvousKey returns K = SHA1(namespace + "/sha256:" + hexDigest), the DHT
// key under which holders of a blob announce the port that serves its
// metainfo.
func RendezvousKey(namespace, hexDigest string) metainfo.Hash {
	return metainfo.Hash(sha1.Sum([]byte(namespace + "/sha256:" + hexDigest)))
}

// validHexDigest reports whether s is a lower-case hex SHA-256 digest.
func validHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// canonicalInfo encodes the only info dict pkgswarm accepts for a blob:
// exactly the keys length, name, piece length and pieces; no private flag.
func canonicalInfo(hexDigest string, size int64, pieces []byte) ([]byte, error) {
	return bencode.Marshal(metainfo.Info{
		Name:        hexDigest,
		Length:      size,
		PieceLength: PieceLength(size),
		Pieces:      pieces,
	})
}

// buildInfo hashes the blob's pieces and returns the canonical info bytes.
func buildInfo(r io.ReaderAt, hexDigest string, size int64) ([]byte, error) {
	if !validHexDigest(hexDigest) {
		return nil, fmt.Errorf("building torrent info: %q is not a lower-case hex sha256 digest", hexDigest)
	}
	if size <= 0 {
		return nil, fmt.Errorf("building torrent info for sha256:%s: size %d is not positive", hexDigest, size)
	}
	p := NewPieceHasher(size)
	if _, err := io.CopyBuffer(p, io.NewSectionReader(r, 0, size), make([]byte, 256<<10)); err != nil {
		return nil, fmt.Errorf("building torrent info for sha256:%s: reading the blob: %w", hexDigest, err)
	}
	pieces, ok := p.Pieces()
	if !ok {
		return nil, fmt.Errorf("building torrent info for sha256:%s: blob is shorter than %d bytes", hexDigest, size)
	}
	return canonicalInfo(hexDigest, size, pieces)
}

// ErrBadMetainfo is wrapped by errors about metainfo that a peer supplied and
// that does not describe the requested blob the way pkgswarm derives it.
var ErrBadMetainfo = errors.New("bad metainfo")

// checkInfo accepts info bytes only when they are byte for byte the canonical
// info dict for (hexDigest, size) with some piece hashes, and returns the real
// infohash (SHA-1 of the bytes, computed here: anacrolix/torrent v1.61.0 would
// accept info bytes that do not hash to a torrent's infohash).
func checkInfo(infoBytes []byte, hexDigest string, size int64) (metainfo.Hash, error) {
	var info metainfo.Info
	if err := bencode.Unmarshal(infoBytes, &info); err != nil {
		return metainfo.Hash{}, fmt.Errorf("%w for sha256:%s: info dict does not decode: %v", ErrBadMetainfo, hexDigest, err)
	}
	switch {
	case info.Name != hexDigest:
		return metainfo.Hash{}, fmt.Errorf("%w for sha256:%s: name is %.80q", ErrBadMetainfo, hexDigest, info.Name)
	case len(info.Files) != 0:
		return metainfo.Hash{}, fmt.Errorf("%w for sha256:%s: multi-file torrent", ErrBadMetainfo, hexDigest)
	case info.Length != size:
		return metainfo.Hash{}, fmt.Errorf("%w for sha256:%s: length is %d, expected %d", ErrBadMetainfo, hexDigest, info.Length, size)
	case info.PieceLength != PieceLength(size):
		return metainfo.Hash{}, fmt.Errorf("%w for sha256:%s: piece length is %d, expected %d", ErrBadMetainfo, hexDigest, info.PieceLength, PieceLength(size))
	case int64(len(info.Pieces)) != numPieces(size)*sha1.Size:
		return metainfo.Hash{}, fmt.Errorf("%w for sha256:%s: %d bytes of piece hashes, expected %d", ErrBadMetainfo, hexDigest, len(info.Pieces), numPieces(size)*sha1.Size)
	}
	want, err := canonicalInfo(hexDigest, size, info.Pieces)
	if err != nil {
		return metainfo.Hash{}, fmt.Errorf("%w for sha256:%s: re-encoding: %v", ErrBadMetainfo, hexDigest, err)
	}
	if !bytes.Equal(want, infoBytes) {
		return metainfo.Hash{}, fmt.Errorf("%w for sha256:%s: info dict is not in canonical form (extra keys or private flag)", ErrBadMetainfo, hexDigest)
	}
	return metainfo.HashBytes(infoBytes), nil
}

// torrentFile is the .torrent document served by Handler: a BEP 3 metainfo
// file whose only key is "info" (no trackers: peers are found on the DHT).
type torrentFile struct {
	Info bencode.Bytes `bencode:"info"`
}

// maxTorrentFileSize bounds what is read from a peer for a blob of size bytes:
// the canonical info dict plus room for a few extra keys.
func maxTorrentFileSize(size int64) int64 {
	return numPieces(size)*sha1.Size + 4096
}

// encodeTorrentFile wraps info bytes in a .torrent document.
func encodeTorrentFile(infoBytes []byte) ([]byte, error) {
	return bencode.Marshal(torrentFile{Info: infoBytes})
}

// ParseTorrentFile parses a .torrent document a peer served for the blob
// (hexDigest, size) and returns its info bytes and real infohash. It fails,
// wrapping ErrBadMetainfo, unless the info dict is exactly the one pkgswarm
// derives for such a blob (name = digest, length = size, fixed piece length,
// nothing else); the piece hashes themselves can only be checked against data.
func ParseTorrentFile(data []byte, hexDigest string, size int64) (infoBytes []byte, ih metainfo.Hash, err error) {
	if !validHexDigest(hexDigest) {
		return nil, ih, fmt.Errorf("parsing metainfo: %q is not a lower-case hex sha256 digest", hexDigest)
	}
	if size <= 0 {
		return nil, ih, fmt.Errorf("parsing metainfo for sha256:%s: size %d is not positive", hexDigest, size)
	}
	if int64(len(data)) > maxTorrentFileSize(size) {
		return nil, ih, fmt.Errorf("%w for sha256:%s: %d bytes is too large for a %d-byte blob", ErrBadMetainfo, hexDigest, len(data), size)
	}
	var tf torrentFile
	if err := bencode.Unmarshal(data, &tf); err != nil {
		return nil, ih, fmt.Errorf("%w for sha256:%s: .torrent does not decode: %v", ErrBadMetainfo, hexDigest, err)
	}
	if len(tf.Info) == 0 {
		return nil, ih, fmt.Errorf("%w for sha256:%s: no info dict", ErrBadMetainfo, hexDigest)
	}
	infoBytes = bytes.Clone(tf.Info)
	ih, err = checkInfo(infoBytes, hexDigest, size)
	if err != nil {
		return nil, ih, err
	}
	return infoBytes, ih, nil
}

// hexOf is a short helper for log attributes.
func hexOf(h metainfo.Hash) string { return hex.EncodeToString(h[:]) }
