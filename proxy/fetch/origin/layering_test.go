package origin

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The origin client knows the pipeline's types and nothing else of
// pkgswarm: not the HTTP front, not the trust code, not other tiers.
func TestImports(t *testing.T) {
	allowed := map[string]bool{"github.com/pkgswarm/pkgswarm/proxy/fetch": true}
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), e.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/pkgswarm/pkgswarm") && !allowed[p] {
				t.Errorf("%s imports %s", e.Name(), p)
			}
		}
	}
}
