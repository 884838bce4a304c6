package apt

import (
	"bytes"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Expect returns what the Release promises for this file as a
// repoindex.Expectation; root names the signed root for logs.
func (f FileSum) Expect(root string) repoindex.Expectation {
	sum := bytes.Clone(f.SHA256)
	return repoindex.Expectation{SHA256: sum, Size: f.Size, Key: repoindex.DigestKey(sum), Root: root}
}

// Expect returns what the Packages index promises for p.Filename as a
// repoindex.Expectation. It copies the digest, so the result may be kept
// after ParsePackages reuses p.
func (p *Package) Expect(root string) repoindex.Expectation {
	return FileSum{SHA256: p.SHA256, Size: p.Size}.Expect(root)
}

// Expect returns what the Sources index promises for the file as a
// repoindex.Expectation, with a copy of the digest.
func (f SourceFile) Expect(root string) repoindex.Expectation {
	return FileSum{SHA256: f.SHA256, Size: f.Size}.Expect(root)
}
