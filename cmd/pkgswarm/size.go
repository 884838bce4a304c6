package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize parses "10G", "512MiB", "1.5T", "0" (unbounded) into bytes.
// Units are binary (K = KiB); a bare number is bytes.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' && r != '.' })
	unit := strings.ToUpper(strings.TrimSpace(s[len(num):]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I")
	mult := map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || f < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit K, M, G or T (e.g. 20G)", s)
	}
	return int64(f * mult), nil
}

// minCacheSize is the smallest --cache-size taken: below it the cache cannot
// hold a distribution's indices and the packages of one upgrade together,
// and every request would evict what the next one needs.
const minCacheSize = 64 << 20

// parseCacheSize parses --cache-size: 0 is unbounded; any other size must be
// at least minCacheSize (a bare number is bytes, which is almost always a
// forgotten unit).
func parseCacheSize(s string) (int64, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("--cache-size: %w", err)
	}
	if n == 0 || n >= minCacheSize {
		return n, nil
	}
	num := strings.TrimSpace(s)
	if strings.TrimRight(num, "0123456789.") == "" {
		return 0, fmt.Errorf("--cache-size %s is %d bytes: write a unit (e.g. %sG); the cache must be at least 64 MiB, or 0 for unbounded", num, n, num)
	}
	return 0, fmt.Errorf("--cache-size %s: the cache must be at least 64 MiB (or 0 for unbounded): below that it cannot hold the indices and packages of one update", num)
}
