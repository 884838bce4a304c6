package apt

import (
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

func TestExpect(t *testing.T) {
	t.Parallel()
	in := stanza("Package: a", "Filename: pool/a.deb", "Size: 42", "SHA256: "+testSum) + "\n" +
		stanza("Package: b", "Filename: pool/b.deb", "Size: 7", "SHA256: "+strings.Repeat("1", 64))
	var kept []repoindex.Expectation
	err := ParsePackages(strings.NewReader(in), func(p *Package) error {
		e := p.Expect("deb.example/debian bookworm")
		kept = append(kept, e)
		if e.Root != "deb.example/debian bookworm" || e.Hex() != strings.TrimPrefix(e.Key, "sha256:") {
			t.Errorf("Expectation %+v", e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The first Expectation must not change when the parser reuses p.
	if len(kept) != 2 || kept[0].Hex() != testSum || kept[1].Hex() != strings.Repeat("1", 64) || kept[0].Size != 42 || kept[1].Size != 7 {
		t.Errorf("got %+v", kept)
	}
}
