package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// The fleet fixture (-big): one large package of -big MB plus a small set
// of 32 packages whose sizes follow the office fixture's small ones (8 KB to
// 1.3 MB), all synthetic (random payloads, stored uncompressed from 1 MiB),
// in one repository signed by a key of its own. Building it takes seconds;
// it is kept under the cache directory between runs.

// smallSizes are the payload sizes of the small set, in KB.
var smallSizes = []int{8, 12, 16, 20, 24, 30, 36, 44, 52, 60, 70, 80, 92, 106, 120, 136,
	154, 174, 196, 220, 248, 280, 316, 356, 400, 450, 510, 580, 660, 760, 900, 1300}

// fleetPackages is the fleet fixture's package list.
func fleetPackages(bigMB int) []testrepo.Package {
	var pkgs []testrepo.Package
	for i, kb := range smallSizes {
		pkgs = append(pkgs, testrepo.Package{Name: fmt.Sprintf("small%02d", i), Version: "1.0-1", Size: kb << 10, Seed: int64(100 + i)})
	}
	return append(pkgs, testrepo.Package{Name: "bigpkg", Version: "1.0-1", Size: bigMB << 20, Seed: 7})
}

// suitePackages is the mirror suite (-mirrors): count packages of sizeMB
// each plus the small set, so that the whole suite is count × sizeMB MB
// and a little more.
func suitePackages(count, sizeMB int) []testrepo.Package {
	var pkgs []testrepo.Package
	for i, kb := range smallSizes {
		pkgs = append(pkgs, testrepo.Package{Name: fmt.Sprintf("small%02d", i), Version: "1.0-1", Size: kb << 10, Seed: int64(100 + i)})
	}
	for i := range count {
		pkgs = append(pkgs, testrepo.Package{Name: fmt.Sprintf("suite%03d", i), Version: "1.0-1", Size: sizeMB << 20, Seed: int64(1000 + i)})
	}
	return pkgs
}

// syntheticFixture builds (or reuses, under cache) a signed repository of
// pkgs and describes it as a fixture.
func syntheticFixture(ctx context.Context, cache, name string, pkgs []testrepo.Package, log *slog.Logger) (*fixture.Fixture, error) {
	root, err := filepath.Abs(filepath.Join(cache, name))
	if err != nil {
		return nil, err
	}
	meta := filepath.Join(root, "fixture.json")
	if b, err := os.ReadFile(meta); err == nil {
		var fx fixture.Fixture
		if json.Unmarshal(b, &fx) == nil {
			fx.Dir, fx.KeyringPath = filepath.Join(root, "repo"), filepath.Join(root, "key", "fleet.gpg")
			log.Info("fixture: using cached repository", "dir", fx.Dir, "packages", len(fx.Debs))
			return &fx, nil
		}
	}
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	log.Info("fixture: building synthetic repository", "dir", root, "packages", len(pkgs))
	key, err := testrepo.NewKeyDir(filepath.Join(root, "key"), "fleet")
	if err != nil {
		return nil, err
	}
	defer key.Close()
	r, err := testrepo.BuildDir(filepath.Join(root, "repo"), testrepo.Options{Origin: "pkgswarm-fleet", Key: key, Packages: pkgs,
		Compressions: []string{"", ".gz"}})
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	fx := fixture.Fixture{ID: name, Suite: r.Suite, Component: r.Component, Synthetic: true}
	for _, d := range r.All {
		fx.Debs = append(fx.Debs, fixture.Deb{Name: d.Name, Version: d.Version, Arch: d.Arch, Path: d.Path, Size: d.Size, SHA256: d.SHA256})
	}
	slices.SortFunc(fx.Debs, func(a, b fixture.Deb) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(fx, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		return nil, err
	}
	// The key file as testrepo writes it.
	fx.Dir, fx.KeyringPath = filepath.Join(root, "repo"), key.KeyringPath
	if fx.KeyringPath != filepath.Join(root, "key", "fleet.gpg") {
		return nil, fmt.Errorf("fixture: keyring at %s, expected %s", fx.KeyringPath, filepath.Join(root, "key", "fleet.gpg"))
	}
	return &fx, nil
}

// bigDeb returns the fixture's largest package.
func bigDeb(fx *fixture.Fixture) fixture.Deb {
	var big fixture.Deb
	for _, d := range fx.Debs {
		if d.Size > big.Size {
			big = d
		}
	}
	return big
}
