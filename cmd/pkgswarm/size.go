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
