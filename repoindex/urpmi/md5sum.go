package urpmi

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// maxMD5SUM bounds an MD5SUM file (real ones list a dozen files).
const maxMD5SUM = 1 << 20

// ParseMD5SUM parses a media_info/MD5SUM file, md5sum(1) output: per line
// 32 hex digits, a space, a space or '*' (binary mode), and a file name. It
// returns file name -> digest. Names are base names (no '/'); a name listed
// twice, a malformed line and files over 1 MiB are errors. Blank lines are
// skipped.
func ParseMD5SUM(r io.Reader) (map[string][16]byte, error) {
	out := map[string][16]byte{}
	sc := bufio.NewScanner(io.LimitReader(r, maxMD5SUM+1))
	sc.Buffer(make([]byte, 0, 1024), maxMD5SUM+1)
	total := 0
	for ln := 1; sc.Scan(); ln++ {
		total += len(sc.Bytes()) + 1
		if total > maxMD5SUM {
			return nil, fmt.Errorf("urpmi: MD5SUM: %w: larger than %d bytes (real ones list a dozen files)", repoindex.ErrTooLarge, maxMD5SUM)
		}
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if len(line) < 35 || line[32] != ' ' || (line[33] != ' ' && line[33] != '*') {
			return nil, fmt.Errorf("urpmi: MD5SUM line %d: want \"<32 hex digits>  <file>\", got %q", ln, clip(line))
		}
		var sum [16]byte
		if _, err := hex.Decode(sum[:], []byte(line[:32])); err != nil {
			return nil, fmt.Errorf("urpmi: MD5SUM line %d: bad digest %q: %v", ln, line[:32], err)
		}
		name := line[34:]
		if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return nil, fmt.Errorf("urpmi: MD5SUM line %d: file name %q is not a base name", ln, clip(name))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("urpmi: MD5SUM line %d: %q listed twice", ln, clip(name))
		}
		out[name] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("urpmi: read MD5SUM: %w", err)
	}
	return out, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
