package fetch

import (
	"regexp"
	"strconv"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want ContentRange
		ok   bool
	}{
		{"bytes 0-0/1", ContentRange{0, 0, 1}, true},
		{"bytes 5-19/20", ContentRange{5, 19, 20}, true},
		{"bytes 5-19/*", ContentRange{5, 19, -1}, true},
		{"bytes 007-9/10", ContentRange{7, 9, 10}, true}, // RFC 9110: 1*DIGIT
		{"bytes 999999999999999998-999999999999999998/999999999999999999", ContentRange{999999999999999998, 999999999999999998, 999999999999999999}, true},
		{"", ContentRange{}, false},
		{"bytes", ContentRange{}, false},
		{"bytes ", ContentRange{}, false},
		{"bytes */20", ContentRange{}, false},
		{"bytes 5-19", ContentRange{}, false},
		{"bytes 5-19/", ContentRange{}, false},
		{"bytes 5-/20", ContentRange{}, false},
		{"bytes -19/20", ContentRange{}, false},
		{"bytes 19-5/20", ContentRange{}, false},
		{"bytes 5-20/20", ContentRange{}, false},
		{"bytes 5-19/19", ContentRange{}, false},
		{"bytes +5-19/20", ContentRange{}, false},
		{"bytes 5-+19/20", ContentRange{}, false},
		{"bytes 5 -19/20", ContentRange{}, false},
		{"bytes  5-19/20", ContentRange{}, false},
		{"bytes 5-19/20 ", ContentRange{}, false},
		{"Bytes 5-19/20", ContentRange{}, false},
		{"items 5-19/20", ContentRange{}, false},
		{"bytes=5-19/20", ContentRange{}, false},
		{"bytes 5-19/2*", ContentRange{}, false},
		{"bytes 5-19/-1", ContentRange{}, false},
		{"bytes 0x5-19/20", ContentRange{}, false},
		{"bytes 5-19/20/30", ContentRange{}, false},
		{"bytes 5-1-9/20", ContentRange{}, false},
		{"bytes 9223372036854775807-9223372036854775807/*", ContentRange{}, false}, // 19 digits
		{"bytes ５-19/20", ContentRange{}, false},                                   // a full-width digit
	}
	for _, tt := range tests {
		got, err := ParseContentRange(tt.in)
		if (err == nil) != tt.ok || tt.ok && got != tt.want {
			t.Errorf("ParseContentRange(%q) = %+v, %v; want %+v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// refContentRange is a second, independent reading of the grammar the
// parser accepts, for the fuzz target to compare with.
var refContentRange = regexp.MustCompile(`^bytes ([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18}|\*)$`)

// FuzzParseContentRange: the parser accepts exactly what the reference
// grammar accepts with first <= last < total, and what it accepts is a range
// a Body can be built from.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-0/1", "bytes 5-19/20", "bytes 5-19/*", "bytes */20", "bytes 19-5/20", "bytes 1-2/3 ", "bytes 00-1/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cr, err := ParseContentRange(s)
		m := refContentRange.FindStringSubmatch(s)
		want := m != nil
		if want {
			first, _ := strconv.ParseInt(m[1], 10, 64)
			last, _ := strconv.ParseInt(m[2], 10, 64)
			total := int64(-1)
			if m[3] != "*" {
				total, _ = strconv.ParseInt(m[3], 10, 64)
			}
			want = first <= last && (total < 0 || last < total)
			if want && err == nil && cr != (ContentRange{first, last, total}) {
				t.Fatalf("ParseContentRange(%q) = %+v, want %d-%d/%d", s, cr, first, last, total)
			}
		}
		if (err == nil) != want {
			t.Fatalf("ParseContentRange(%q): err %v, reference accepts: %v", s, err, want)
		}
		if err == nil {
			if cr.First < 0 || cr.First > cr.Last || cr.Total != -1 && cr.Last >= cr.Total || cr.Last-cr.First+1 <= 0 {
				t.Fatalf("ParseContentRange(%q) = %+v: not a usable range", s, cr)
			}
		}
	})
}
