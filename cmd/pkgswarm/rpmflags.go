package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
)

// rpmFlags are the serve flags for urpmi media and rpm-md repositories.
func rpmFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "rpm-key", EnvVars: env("rpm-key"),
			Usage: "OpenPGP public key file (armored or binary) or directory of them (e.g. /etc/pki/rpm-gpg) whose signatures make an rpm trusted; also verifies rpm-md repomd.xml.asc (repeatable)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "rpm-configured-keys-only", EnvVars: env("rpm-configured-keys-only"),
			Usage: "never trust a urpmi medium's own pubkey, only --rpm-key keys (without it, the pubkey is fetched on first use and pinned, as urpmi does)"}),
	}
}

// rpmConfig is the rpm trust configuration of the flags.
type rpmConfig struct {
	Keys               *rpmsig.KeySet // nil: none
	ConfiguredKeysOnly bool
}

// rpmSettings builds the rpm trust configuration from the flags. Every file
// named must hold at least one key, so a mistyped path is an error rather
// than a silently empty key set.
func rpmSettings(c *cli.Context) (rpmConfig, error) {
	cfg := rpmConfig{ConfiguredKeysOnly: c.Bool("rpm-configured-keys-only")}
	var data [][]byte
	for _, p := range c.StringSlice("rpm-key") {
		files, err := keyFiles(p)
		if err != nil {
			return cfg, err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return cfg, fmt.Errorf("--rpm-key: %w", err)
			}
			if _, err := rpmsig.LoadKeys(b); err != nil {
				return cfg, fmt.Errorf("--rpm-key %s: %w", f, err)
			}
			data = append(data, b)
		}
	}
	if cfg.ConfiguredKeysOnly && len(data) == 0 {
		return cfg, fmt.Errorf("--rpm-configured-keys-only needs at least one --rpm-key, or no rpm could ever be verified")
	}
	if len(data) == 0 {
		return cfg, nil
	}
	ks, err := rpmsig.LoadKeys(data...)
	if err != nil {
		return cfg, fmt.Errorf("--rpm-key: %w", err)
	}
	cfg.Keys = ks
	return cfg, nil
}

// keyFiles expands a --rpm-key argument: a file, or the regular files of a
// directory in name order.
func keyFiles(p string) ([]string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("--rpm-key: %w", err)
	}
	if !fi.IsDir() {
		return []string{p}, nil
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("--rpm-key: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, filepath.Join(p, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--rpm-key %s: directory holds no key file", p)
	}
	sort.Strings(out)
	return out, nil
}
