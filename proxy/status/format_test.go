package status

import (
	"strconv"
	"testing"
)

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1280, "1.2 KiB"}, // 1.25: ties to even, as the script does
		{1792, "1.8 KiB"}, {20 << 20, "20.0 MiB"}, {3<<30 + 1<<29, "3.5 GiB"}, {1 << 62, "4.0 EiB"},
	} {
		t.Run(strconv.FormatInt(tc.n, 10), func(t *testing.T) {
			if got := FormatBytes(tc.n); got != tc.want {
				t.Fatalf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
			}
		})
	}
}
