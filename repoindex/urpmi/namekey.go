package urpmi

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sort"
	"strings"
)

// nameKeyDomain separates name keys from every other SHA-256 in pkgswarm.
const nameKeyDomain = "pkgswarm rpm name key v1"

// NameKey is the peer lookup key for an rpm that metadata knows only by
// name and size (DESIGN.md, Peers): lower-case hex SHA-256 over the
// canonical encoding
//
//	"pkgswarm rpm name key v1"
//	uint32(number of key IDs)
//	for each key ID, in sorted order: uint32(len(id)) id
//	uint32(len(nevra)) nevra
//	uint64(size)
//
// with integers big-endian (size as two's complement) and key IDs trimmed,
// lower-cased and deduplicated before sorting; rpmsig.KeySet.KeyIDs gives
// them in that form (16 hex digits per primary key). Length prefixes make the
// encoding injective, so two different (keys, NEVRA, size) triples never
// share an input. Two nodes that trust the same medium keys derive the same
// key for the same package; a node with other keys derives another and will
// not be handed a file it could not verify anyway.
func NameKey(keyIDs []string, nevra string, size int64) string {
	ids := make([]string, 0, len(keyIDs))
	seen := map[string]bool{}
	for _, id := range keyIDs {
		id = strings.ToLower(strings.TrimSpace(id))
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	sort.Strings(ids)
	h := sha256.New()
	var n [8]byte
	u32 := func(v int) {
		binary.BigEndian.PutUint32(n[:4], uint32(v))
		h.Write(n[:4])
	}
	h.Write([]byte(nameKeyDomain))
	u32(len(ids))
	for _, id := range ids {
		u32(len(id))
		h.Write([]byte(id))
	}
	u32(len(nevra))
	h.Write([]byte(nevra))
	binary.BigEndian.PutUint64(n[:], uint64(size))
	h.Write(n[:])
	return hex.EncodeToString(h.Sum(nil))
}
