package fetch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ContentRange is a parsed Content-Range of a 206 answer: bytes First
// through Last (inclusive) of a representation of Total bytes (-1 when the
// server wrote "*").
type ContentRange struct {
	First, Last, Total int64
}

// ParseContentRange parses a Content-Range header of a single-part 206
// answer strictly (RFC 9110, 14.4): "bytes FIRST-LAST/TOTAL" or
// "bytes FIRST-LAST/*", decimal digits only (no sign, no space, no leading
// "+"), FIRST <= LAST, LAST < TOTAL. The unsatisfied form "bytes */TOTAL"
// belongs to a 416 and is refused.
func ParseContentRange(s string) (ContentRange, error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return ContentRange{}, errors.New(`does not start with "bytes "`)
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return ContentRange{}, errors.New(`no "/" before the complete length`)
	}
	first, last, ok := strings.Cut(span, "-")
	if !ok {
		return ContentRange{}, errors.New(`no "-" in the range`)
	}
	var cr ContentRange
	var err error
	if cr.First, err = parseDigits(first); err != nil {
		return ContentRange{}, fmt.Errorf("first byte: %w", err)
	}
	if cr.Last, err = parseDigits(last); err != nil {
		return ContentRange{}, fmt.Errorf("last byte: %w", err)
	}
	if cr.First > cr.Last {
		return ContentRange{}, fmt.Errorf("first byte %d after last byte %d", cr.First, cr.Last)
	}
	if total == "*" {
		cr.Total = -1
		return cr, nil
	}
	if cr.Total, err = parseDigits(total); err != nil {
		return ContentRange{}, fmt.Errorf("complete length: %w", err)
	}
	if cr.Last >= cr.Total {
		return ContentRange{}, fmt.Errorf("last byte %d not before the complete length %d", cr.Last, cr.Total)
	}
	return cr, nil
}

// parseDigits parses a non-negative decimal of 1 to 18 digits (so that it
// fits an int64 with room for a +1).
func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, fmt.Errorf("%q is not a number of 1 to 18 digits", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
