//go:build race

package limittest

// Race is true when the race detector is on. It makes decompression and
// parsing 10 to 20 times slower, so bomb tests then cover fewer formats
// (Formats) and skip their heaviest cases; memory bounds are checked in
// normal runs.
const Race = true

// Formats lists the extensions Bomb can write that bomb tests cover: under
// the race detector, two.
var Formats = []string{".gz", ".xz"}
