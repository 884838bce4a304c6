package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// plot draws finish time, origin ratio and upload per node against N, one
// line per set-up, with gnuplot (office-finish.png, office-origin.png,
// office-upload.png in dir).
func plot(ctx context.Context, dir, name string, res Results) error {
	tmp, err := os.MkdirTemp("", "office-plot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	type series struct {
		title string
		value func(Run) (float64, bool)
	}
	charts := []struct {
		file, title, ylabel string
		series              []series
		limit               string // an extra reference line, gnuplot syntax
	}{
		{name + "-finish.png", "Time until the last node has every package", "seconds", nil, ""},
		{name + "-origin.png", "Origin bytes over one copy of what was fetched", "origin bytes / one copy", nil, "1 title 'physical limit (one copy)' dt 2 lc rgb 'gray40'"},
		{name + "-upload.png", "Bytes sent on the LAN per box (mean)", "MB", nil, ""},
	}
	for _, s := range allSetups {
		charts[0].series = append(charts[0].series, series{s, func(r Run) (float64, bool) { return r.FinishSeconds, r.Setup == s && r.OK }})
		charts[1].series = append(charts[1].series, series{s, func(r Run) (float64, bool) { return r.OriginRatio, r.Setup == s && r.OK }})
		charts[2].series = append(charts[2].series, series{s + " nodes", func(r Run) (float64, bool) { return float64(r.UploadMean) / 1e6, r.Setup == s && r.OK }})
	}
	charts[2].series = append(charts[2].series, series{"apt-cacher-ng box", func(r Run) (float64, bool) {
		return float64(r.CacheUpload) / 1e6, r.Setup == setupACNG && r.OK
	}})
	for ci, c := range charts {
		var plots []string
		for si, s := range c.series {
			var data strings.Builder
			for _, r := range res.Runs {
				if v, ok := s.value(r); ok {
					fmt.Fprintf(&data, "%d %g\n", r.Nodes, v)
				}
			}
			if data.Len() == 0 {
				continue
			}
			f := filepath.Join(tmp, fmt.Sprintf("c%d-s%d.dat", ci, si))
			if err := os.WriteFile(f, []byte(data.String()), 0o644); err != nil {
				return err
			}
			plots = append(plots, fmt.Sprintf("%q using 1:2 with linespoints lw 2 pt 7 title %q", f, s.title))
		}
		if c.limit != "" {
			plots = append(plots, c.limit)
		}
		if len(plots) == 0 {
			continue
		}
		script := fmt.Sprintf(`set terminal pngcairo size 800,480 font "sans,11"
set output %q
set title %q
set xlabel "nodes (N)"
set ylabel %q
set grid
set key top left
set yrange [0:*]
set xrange [0:*]
plot %s
`, filepath.Join(dir, c.file), c.title, c.ylabel, strings.Join(plots, ", \\\n  "))
		cmd := exec.CommandContext(ctx, "gnuplot")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("gnuplot for %s: %v: %s", c.file, err, out)
		}
	}
	return nil
}
