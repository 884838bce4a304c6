package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/pkgswarm/pkgswarm/proxy/status"
	"github.com/pkgswarm/pkgswarm/proxy/store"
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
			freed, err := shrink(st, target)
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

// shrink deletes blobs until the store holds at most target bytes, and
// stops near it: least recently used first, pinned blobs (those the newest
// roots list) last, but a blob larger than what is still to be freed is
// passed over while smaller ones can finish the job. Store.Evict stops at
// the first blob that crosses the target, however large: one 1 GiB
// package at the cold end took a 1.5 GiB cache asked to keep 400 MiB down
// to 9.7 MiB. It returns the bytes freed.
func shrink(st *store.Store, target int64) (int64, error) {
	var blobs []gcBlob
	err := st.Walk(func(d store.Digest, size int64) error {
		bi, err := st.Stat(d)
		if err != nil {
			return nil // gone meanwhile
		}
		blobs = append(blobs, gcBlob{d: d, size: bi.Size, access: bi.LastAccess.Unix(), pinned: bi.Pinned})
		return nil
	})
	if err != nil {
		return 0, err
	}
	_, total := st.Usage()
	var freed int64
	for _, b := range gcPlan(blobs, total, target) {
		if err := st.DeleteBlob(b.d); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return freed, err
		}
		freed += b.size
	}
	return freed, nil
}

type gcBlob struct {
	d      store.Digest
	size   int64
	access int64 // last access, Unix seconds
	pinned bool
}

// gcPlan chooses the blobs to delete so that total drops to at most target
// and as little below it as the sizes allow. Unpinned blobs go before any
// pinned one; within each group, least recently used first, and a blob
// bigger than what is left to free waits: if the smaller ones after it do
// not reach the target, the smallest of those that waited goes (one blob
// then ends it).
func gcPlan(blobs []gcBlob, total, target int64) []gcBlob {
	need := total - max(target, 0)
	if need <= 0 {
		return nil
	}
	slices.SortFunc(blobs, func(a, b gcBlob) int {
		if a.pinned != b.pinned {
			if a.pinned {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(a.access, b.access); c != 0 {
			return c
		}
		return bytes.Compare(a.d[:], b.d[:])
	})
	var out []gcBlob
	for _, pinned := range []bool{false, true} {
		var waited []gcBlob
		for _, b := range blobs {
			if b.pinned != pinned || need <= 0 {
				continue
			}
			if b.size <= need {
				out = append(out, b)
				need -= b.size
				continue
			}
			waited = append(waited, b)
		}
		if need > 0 && len(waited) > 0 {
			// Each one that waited is larger than what is left: the
			// smallest ends it nearest the target.
			smallest := slices.MinFunc(waited, func(a, b gcBlob) int { return cmp.Compare(a.size, b.size) })
			out = append(out, smallest)
			need -= smallest.size
		}
		if need <= 0 {
			break
		}
	}
	return out
}
