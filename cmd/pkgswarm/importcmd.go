package main

import (
	"errors"
	"fmt"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pkgswarm/pkgswarm/proxy/trust"
)

func importCommand() *cli.Command {
	flags := append(offlineFlags(),
		&cli.BoolFlag{Name: "strict", Usage: "exit with status 1 when any file is refused; without it, refusals are listed and the exit status is 0"})
	return &cli.Command{
		Name:      "import",
		Usage:     "add existing .deb files (e.g. /var/cache/apt/archives) to the cache, each only if a verified root lists its digest (serve must be stopped)",
		ArgsUsage: "DIR...",
		Description: "Hashes every .deb under each DIR and adds it to the cache when the Packages index of a\n" +
			"repository whose signed root pkgswarm has verified lists that SHA-256: the same proof a\n" +
			"download must pass. Other files (tampered, from a repository pkgswarm has not seen yet, or\n" +
			"superseded by a newer root) are refused and listed; run apt-get update through pkgswarm\n" +
			"first so it knows the repositories. .rpm files are not imported yet.\n\n" + offlineNote +
			"\nThe .deb files are then read as that user too.",
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runImport,
	}
}

func runImport(c *cli.Context) error {
	c, err := withTrailingFlags(c)
	if err != nil {
		return cli.Exit(err, 2)
	}
	if c.NArg() == 0 {
		return exitf(2, "import: name a directory of .deb files, e.g. pkgswarm import /var/cache/apt/archives")
	}
	var files []string
	for _, dir := range c.Args().Slice() {
		// Absolute: opening the store may move the process into the data
		// directory (see runAsDataDirOwner).
		root, err := filepath.Abs(dir)
		if err != nil {
			return exitf(1, "import: %s: %w", dir, err)
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "partial" && p != root {
				return filepath.SkipDir // apt's unfinished downloads
			}
			if d.Type().IsRegular() && (strings.HasSuffix(p, ".deb") || strings.HasSuffix(p, ".udeb") || strings.HasSuffix(p, ".rpm")) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return exitf(1, "import: reading %s: %w", dir, err)
		}
	}
	st, err := openStoreOffline(c)
	if err != nil {
		return cli.Exit(err, 1)
	}
	defer st.Close()
	im, err := trust.NewImporter(st)
	if err != nil {
		return exitf(1, "import: %w", err)
	}
	if im.Len() == 0 {
		return exitf(1, "import: the cache knows no package of a verified repository yet: run apt-get update through pkgswarm first, then import again")
	}

	var total int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	bar := newProgressBar(c.App.ErrWriter, "import", total, stderrIsTerminal())
	var added, held, refused int
	var addedBytes int64
	out := c.App.Writer
	for _, f := range files {
		res, n, err := im.Import(f, bar.Add)
		switch {
		case err != nil:
			refused++
			if errors.Is(err, fs.ErrPermission) {
				err = fmt.Errorf("%w (pkgswarm reads it as %s, the owner of the cache: make it readable to that user)", err, userName(os.Geteuid()))
			}
			bar.Finish()
			fmt.Fprintf(out, "refused %s: %v\n", f, err)
		case res == trust.Imported:
			added++
			addedBytes += n
		case res == trust.AlreadyHeld:
			held++
		}
	}
	bar.Finish()
	fmt.Fprintf(out, "imported %d files (%s), %d already cached, %d refused\n", added, status.FormatBytes(addedBytes), held, refused)
	if refused > 0 && c.Bool("strict") {
		return exitf(1, "import: %d files refused (listed above)", refused)
	}
	return nil
}
