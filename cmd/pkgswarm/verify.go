package main

import (
	"errors"
	"fmt"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// offlineNote ends the description of each command that opens the cache
// itself (import, verify, gc); the README says the same.
const offlineNote = "The cache admits one process at a time (a lock in the data directory): while serve runs,\n" +
	"this command changes nothing and says so. Stop serve (systemctl stop pkgswarm), run it, start\n" +
	"serve again. Run as root on a cache that belongs to another user (the packaged service's), it\n" +
	"runs as that user, so that every file it creates there stays that user's."

// offlineFlags are the flags of the commands that work on the cache
// directly (import, verify, gc): serve's --config and --data-dir, read from
// the same config file, so they find the cache serve uses.
func offlineFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", EnvVars: env("config"), Usage: "TOML config file to read data-dir from (default " + defaultConfigFile + " when it exists)"},
		altsrc.NewStringFlag(&cli.StringFlag{Name: "data-dir", EnvVars: env("data-dir"), Usage: "the cache directory of pkgswarm serve (default /var/cache/pkgswarm when writable, else the user cache dir)"}),
	}
}

// openStoreOffline opens the cache of a stopped node, as the owner of its
// directory (see runAsDataDirOwner). The store admits one process at a
// time, so while serve runs this fails with advice to stop it.
func openStoreOffline(c *cli.Context) (*store.Store, error) {
	dir := c.String("data-dir")
	if dir == "" {
		dir = defaultDataDir()
	}
	if _, err := os.Stat(filepath.Join(dir, "index")); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("cannot enter the cache in %s as %s (%v): run this command as root (pkgswarm then runs as the owner of %s) or as that owner",
				dir, userName(os.Geteuid()), err, dir)
		}
		return nil, fmt.Errorf("no pkgswarm cache in %s (%v): give serve's cache directory with --data-dir", dir, err)
	}
	// The store logs warnings only; the switch of user is said on one line.
	info := slog.New(slog.NewTextHandler(c.App.ErrWriter, nil))
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, _, err := openDataDir(dir, store.Options{Logger: log}, info,
		"stop it first (systemctl stop pkgswarm), run this command, then start it again; the cache admits one process at a time")
	return st, err
}

func verifyCommand() *cli.Command {
	flags := offlineFlags()
	return &cli.Command{
		Name:  "verify",
		Usage: "re-hash every cached file and drop those that do not match their digest (serve must be stopped)",
		Description: "Reads every blob of the cache and deletes each one whose bytes no longer hash to its name\n" +
			"(disk corruption, or a file edited behind pkgswarm's back). A dropped file is fetched again\n" +
			"the next time a client asks for it. Exits 0 when the check ran, whatever it found.\n\n" + offlineNote,
		ArgsUsage: " ",
		Flags:     flags,
		Before:    loadConfigFile(flags),
		Action: func(c *cli.Context) error {
			st, err := openStoreOffline(c)
			if err != nil {
				return cli.Exit(err, 1)
			}
			defer st.Close()
			blobs, total := st.Usage()
			bar := newProgressBar(c.App.ErrWriter, "verify", total, stderrIsTerminal())
			bad, err := st.Verify(c.Context, bar.Set)
			bar.Finish()
			for _, d := range bad {
				fmt.Fprintf(c.App.Writer, "dropped %s: its bytes do not hash to its name\n", d)
			}
			if err != nil {
				return exitf(1, "verify stopped: %w (nothing was changed beyond the files listed above)", err)
			}
			fmt.Fprintf(c.App.Writer, "verified %s (%s): %s\n", plural(blobs, "file", "files"), status.FormatBytes(total), verdict(len(bad)))
			return nil
		},
	}
}

// verdict sums up what verify found.
func verdict(bad int) string {
	if bad == 0 {
		return "every file matches its digest"
	}
	return fmt.Sprintf("%s did not match and %s dropped (listed above); each is fetched again when next asked for",
		plural(bad, "file", "files"), map[bool]string{true: "was", false: "were"}[bad == 1])
}

// plural is "1 file", "2 files", "0 files".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
