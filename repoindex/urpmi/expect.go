package urpmi

import (
	"crypto/md5"
	"fmt"
	"io"
	"os"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// ExpectMD5 returns the expectation for the media_info file name (e.g.
// "synthesis.hdlist.cz") that a parsed MD5SUM lists: Check compares the
// complete file's MD5 with the listed one. Size is -1 and Key is empty: MD5
// is not collision resistant, so a file known only by its MD5 must come from
// the origin, never from peers; the check catches corruption and a
// synthesis that does not belong to the MD5SUM fetched with it. ok is false
// when name is not listed.
func ExpectMD5(sums map[string][16]byte, name string) (e repoindex.Expectation, ok bool) {
	want, ok := sums[name]
	if !ok {
		return repoindex.Expectation{}, false
	}
	return repoindex.Expectation{
		Size: -1,
		Check: func(f *os.File) error {
			h := md5.New()
			if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<63-1)); err != nil {
				return fmt.Errorf("urpmi: read %s to check its MD5: %w", f.Name(), err)
			}
			if got := h.Sum(nil); string(got) != string(want[:]) {
				return fmt.Errorf("urpmi: %s: MD5 %x, MD5SUM lists %x for %s; fetch MD5SUM and %s again from the origin",
					f.Name(), got, want, name, name)
			}
			return nil
		},
	}, true
}
