package swarm

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The swarm imports no other pkgswarm package: it reaches blobs only through
// the Blobs interface it defines (DESIGN.md, Layout).
func TestImportsNoPkgswarmPackage(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), e.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/pkgswarm/pkgswarm") {
				t.Errorf("%s imports %s", e.Name(), p)
			}
		}
	}
}
