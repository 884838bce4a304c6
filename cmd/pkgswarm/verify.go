package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/pkgswarm/pkgswarm/proxy"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// offlineFlags are the flags of the commands that work on the cache
// directly (import, verify, gc): serve's --config and --data-dir, read from
// the same config file, so they find the cache serve uses.
func offlineFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", EnvVars: env("config"), Usage: "TOML config file to read data-dir from (default " + defaultConfigFile + " when it exists)"},
		altsrc.NewStringFlag(&cli.StringFlag{Name: "data-dir", EnvVars: env("data-dir"), Usage: "the cache directory of pkgswarm serve (default /var/cache/pkgswarm when writable, else the user cache dir)"}),
	}
}

// openStoreOffline opens the cache of a stopped node. The store admits one
// process at a time, so while serve runs this fails with advice to stop it.
func openStoreOffline(c *cli.Context) (*store.Store, error) {
	dir := c.String("data-dir")
	if dir == "" {
		dir = defaultDataDir()
	}
	if _, err := os.Stat(filepath.Join(dir, "index")); err != nil {
		return nil, fmt.Errorf("no pkgswarm cache in %s (%v): give serve's cache directory with --data-dir", dir, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(store.Options{Dir: dir, Logger: log})
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, fmt.Errorf("the cache in %s is in use by a running pkgswarm: stop it first (systemctl stop pkgswarm), run this command, then start it again", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the cache in %s: %w", dir, err)
	}
	return st, nil
}

func verifyCommand() *cli.Command {
	flags := offlineFlags()
	return &cli.Command{
		Name:  "verify",
		Usage: "re-hash every cached file and drop those that do not match their digest (serve must be stopped)",
		Description: "Reads every blob of the cache and deletes each one whose bytes no longer hash to its name\n" +
			"(disk corruption, or a file edited behind pkgswarm's back). A dropped file is fetched again\n" +
			"the next time a client asks for it. Exits 0 when the check ran, whatever it found.",
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
			fmt.Fprintf(c.App.Writer, "verified %d files (%s): %d bad, dropped\n", blobs, proxy.FormatBytes(total), len(bad))
			return nil
		},
	}
}
