//go:build !race

package limittest

// Race is true when the race detector is on; see race.go.
const Race = false

// Formats lists the extensions Bomb can write, as package decompress
// names them.
var Formats = []string{".gz", ".xz", ".zst", ".bz2", ".lz4", ".lzma"}
