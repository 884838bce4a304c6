package main

import (
	"fmt"
	"github.com/pkgswarm/pkgswarm/proxy/status"

	"github.com/urfave/cli/v2"
)

func gcCommand() *cli.Command {
	// --size is required, but checked by the action: urfave/cli checks a
	// Required flag before it looks for -h among the arguments.
	flags := append(offlineFlags(), &cli.StringFlag{Name: "size",
		Usage: "evict least-recently-used files until the cache holds at most this much, e.g. 5G or 500M (0 empties it) (required)"})
	return &cli.Command{
		Name:  "gc",
		Usage: "shrink the cache to a size, least recently used first (serve must be stopped)",
		Description: "Files listed by the newest signed roots go last. A running node does this by itself\n" +
			"when the cache passes --cache-size; gc is for shrinking it by hand.\n\n" + offlineNote,
		ArgsUsage: " ",
		Flags:     flags,
		Before:    loadConfigFile(flags),
		Action: func(c *cli.Context) error {
			if !c.IsSet("size") {
				return exitf(2, `Required flag "size" not set: say how much the cache may keep, e.g. pkgswarm gc --size 5G`)
			}
			target, err := parseSize(c.String("size"))
			if err != nil {
				return exitf(2, "--size: %w", err)
			}
			st, err := openStoreOffline(c)
			if err != nil {
				return cli.Exit(err, 1)
			}
			defer st.Close()
			beforeN, before := st.Usage()
			freed, err := st.Evict(target)
			afterN, after := st.Usage()
			if err != nil {
				return exitf(1, "gc: %w (freed %s before the error)", err, status.FormatBytes(freed))
			}
			fmt.Fprintf(c.App.Writer, "cache: %d files, %s -> %d files, %s (freed %s, target %s)\n",
				beforeN, status.FormatBytes(before), afterN, status.FormatBytes(after), status.FormatBytes(freed), status.FormatBytes(target))
			return nil
		},
	}
}
