package proxy_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/pkgswarm/pkgswarm"

// imports maps every non-test package of the module (by import path) to
// the module packages its non-test files import.
func moduleImports(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "testdata" || name == "packaging" || strings.HasPrefix(name, ".") && p != root {
				return filepath.SkipDir // packaging is a module of its own
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		pkg := module
		if rel != "." {
			pkg += "/" + filepath.ToSlash(rel)
		}
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(ip, module+"/") && !slices.Contains(out[pkg], ip) {
				out[pkg] = append(out[pkg], ip)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func under(pkg, dir string) bool {
	return pkg == module+"/"+dir || strings.HasPrefix(pkg, module+"/"+dir+"/")
}

// TestLayering enforces the layout docs/design.md describes, so that it is
// kept by a test rather than by review. Test files are exempt (they may
// wire anything).
func TestLayering(t *testing.T) {
	imports := moduleImports(t)
	if len(imports) < 20 {
		t.Fatalf("found only %d packages: the walk is broken", len(imports))
	}
	formats := []string{"repoindex/apt", "repoindex/urpmi", "repoindex/rpmmd", "repoindex/rpmsig"}
	tiers := []string{"proxy/fetch/lan", "proxy/fetch/origin", "proxy/fetch/swarmtier"}
	rules := []struct {
		name string
		// applies says whether the rule constrains pkg; forbidden whether
		// pkg may not import imp.
		applies   func(pkg string) bool
		forbidden func(pkg, imp string) bool
	}{
		{
			name:    "only the trust package decides trust: nothing else of proxy/ imports the repoindex formats",
			applies: func(p string) bool { return under(p, "proxy") && !under(p, "proxy/trust") },
			forbidden: func(_, imp string) bool {
				return slices.ContainsFunc(formats, func(f string) bool { return under(imp, f) })
			},
		},
		{
			name:    "the pipeline imports neither the trust package nor the HTTP front",
			applies: func(p string) bool { return under(p, "proxy/fetch") },
			forbidden: func(_, imp string) bool {
				return under(imp, "proxy/trust") || imp == module+"/proxy" || under(imp, "proxy/status")
			},
		},
		{
			name:    "the HTTP front imports no tier: not the swarm, not discovery, not the tier adapters",
			applies: func(p string) bool { return p == module+"/proxy" },
			forbidden: func(_, imp string) bool {
				return under(imp, "swarm") || under(imp, "discovery") || slices.Contains(tiers, strings.TrimPrefix(imp, module+"/"))
			},
		},
		{
			name: "only cmd and the one wiring package (internal/node, and the test rig that configures it) wire tiers together",
			applies: func(p string) bool {
				return !under(p, "cmd") && p != module+"/internal/node" && p != module+"/internal/rig"
			},
			forbidden: func(_, imp string) bool {
				return slices.Contains(tiers, strings.TrimPrefix(imp, module+"/"))
			},
		},
		{
			name: "repoindex, discovery, swarm, target and store import nothing of pkgswarm beyond themselves",
			applies: func(p string) bool {
				return under(p, "repoindex") || under(p, "discovery") || under(p, "swarm") || under(p, "proxy/target") || under(p, "proxy/store")
			},
			forbidden: func(pkg, imp string) bool {
				for _, own := range []string{"repoindex", "discovery", "swarm", "proxy/target", "proxy/store"} {
					if under(pkg, own) {
						return !under(imp, own)
					}
				}
				return true
			},
		},
		{
			name:      "the origin client knows only the pipeline's types and URL canonicalisation",
			applies:   func(p string) bool { return under(p, "proxy/fetch/origin") },
			forbidden: func(_, imp string) bool { return imp != module+"/proxy/fetch" && imp != module+"/proxy/target" },
		},
	}
	for _, rule := range rules {
		for pkg, imps := range imports {
			if !rule.applies(pkg) {
				continue
			}
			for _, imp := range imps {
				if rule.forbidden(pkg, imp) {
					t.Errorf("%s imports %s; rule: %s", strings.TrimPrefix(pkg, module+"/"), strings.TrimPrefix(imp, module+"/"), rule.name)
				}
			}
		}
	}
}
