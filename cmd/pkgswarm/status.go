package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

// defaultServer is where the operator commands find a running node.
const defaultServer = "http://127.0.0.1:3142"

// operatorCommands are the commands besides serve: talking to a running
// node (status, peers, prefetch), working on a stopped node's cache
// (import, verify, gc), configuring clients (setup), and shell completion
// and generated documentation.
func operatorCommands() []*cli.Command {
	return []*cli.Command{
		statusCommand(),
		peersCommand(),
		prefetchCommand(),
		importCommand(),
		verifyCommand(),
		gcCommand(),
		setupCommand(),
		completionCommand(),
		gendocCommand(),
	}
}

func serverFlag() cli.Flag {
	return &cli.StringFlag{Name: "server", EnvVars: env("server"), Value: defaultServer,
		Usage: "base URL of the running pkgswarm node"}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the node's status document as JSON instead of a table"}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show a running node's hit ratio, traffic by source, cache, repositories, transfers and failures",
		ArgsUsage: " ",
		Flags:     []cli.Flag{serverFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			raw, st, err := fetchNodeStatus(c.Context, c.String("server"))
			if err != nil {
				return cli.Exit(err, 1)
			}
			if c.Bool("json") {
				_, err := c.App.Writer.Write(raw)
				return err
			}
			return printStatus(c.App.Writer, st)
		},
	}
}

// fetchNodeStatus reads GET /_pkgswarm/status of the node at server and
// returns the document as sent (indented JSON) and decoded.
func fetchNodeStatus(ctx context.Context, server string) ([]byte, status.Status, error) {
	var st status.Status
	u := strings.TrimRight(server, "/") + "/_pkgswarm/status"
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, st, fmt.Errorf("--server %q: %w (want a URL like %s)", server, err, defaultServer)
	}
	// The node is asked directly: a proxy variable in the environment
	// often points at the node itself, or at a proxy that cannot reach it.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, st, fmt.Errorf("cannot reach pkgswarm at %s: %w (is `pkgswarm serve` running there? start it, e.g. systemctl start pkgswarm, or point --server at it)", server, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, st, fmt.Errorf("reading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, st, fmt.Errorf("%s answered %s: %s (is --server a pkgswarm node, and is this machine in its --allow-clients?)", u, resp.Status, firstLine(raw))
	}
	var head struct {
		Version json.RawMessage `json:"version"`
		NodeID  string          `json:"node_id"`
	}
	if json.Unmarshal(raw, &head) == nil && head.NodeID != "" && bytes.HasPrefix(head.Version, []byte(`"`)) {
		return nil, st, fmt.Errorf("%s: the node runs an older pkgswarm (%s) whose status document has no schema version: upgrade it, or use the same version here", u, head.Version)
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.NodeID == "" {
		if err == nil {
			err = errors.New("no node_id")
		}
		return nil, st, fmt.Errorf("%s: not a pkgswarm status document: %w (is --server a pkgswarm node?)", u, err)
	}
	if st.Version > status.SchemaVersion {
		return nil, st, fmt.Errorf("%s: status document version %d; this pkgswarm (%s) reads version %d: use the node's version of pkgswarm", u, st.Version, version, status.SchemaVersion)
	}
	return raw, st, nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	if len(line) > 200 {
		line = line[:200]
	}
	return string(line)
}

// servedSources lists the sources of served bytes: the four tiers first,
// then any other the node reports.
func servedSources(served map[string]int64) []string {
	out := []string{"cache", "lan", "swarm", "origin"}
	var extra []string
	for k := range served {
		switch k {
		case "cache", "lan", "swarm", "origin":
		default:
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

func printStatus(w io.Writer, st status.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	mode := ""
	if st.Offline {
		mode = "  (offline: origins are never contacted)"
	}
	fmt.Fprintf(tw, "node\t%s  version %s%s\n", st.NodeID, st.PkgswarmVersion, mode)
	fmt.Fprintf(tw, "hit ratio\t%.1f %%  (%d hits, %d misses)\n", 100*st.HitRatio, st.Requests["hit"], st.Requests["miss"])
	var total, saved int64
	var parts []string
	for _, src := range servedSources(st.Served) {
		n := st.Served[src]
		total += n
		if src != "origin" {
			saved += n
		}
		parts = append(parts, src+" "+status.FormatBytes(n))
	}
	fmt.Fprintf(tw, "served\t%s: %s\n", status.FormatBytes(total), strings.Join(parts, ", "))
	fmt.Fprintf(tw, "origin\t%s fetched in %d requests (%d errors); %s served without an origin\n",
		status.FormatBytes(st.Origin.Bytes), st.Origin.Requests, st.Origin.Errors, status.FormatBytes(saved))
	bound := "unbounded"
	if st.Store.MaxBytes > 0 {
		bound = "bound " + status.FormatBytes(st.Store.MaxBytes)
	}
	fmt.Fprintf(tw, "cache\t%d files, %s (%s)\n", st.Store.Blobs, status.FormatBytes(st.Store.Bytes), bound)
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nrepositories (%d)\n", len(st.Repos))
	if len(st.Repos) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TRUST\tREPOSITORY\tROOT DATE\tAGE\tSIGNER")
		for _, r := range st.Repos {
			trust := "verified"
			if !r.Trusted {
				trust = "UNTRUSTED"
			}
			date, age := "-", "-"
			if !r.Date.IsZero() {
				date = r.Date.UTC().Format("2006-01-02 15:04 UTC")
				age = opAge(st.Time.Sub(r.Date))
			}
			signer := r.Signer
			if signer == "" {
				signer = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", trust, r.Repo, date, age, signer)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\ntransfers in progress (%d)\n", len(st.Transfers))
	for _, t := range st.Transfers {
		size := "?"
		if t.Size > 0 {
			size = status.FormatBytes(t.Size)
		}
		fmt.Fprintf(w, "  %s  %s of %s from %s\n", t.URL, status.FormatBytes(t.Bytes), size, t.Source)
	}

	fmt.Fprintf(w, "\nverification failures (%d)\n", len(st.Failures))
	for i := len(st.Failures) - 1; i >= 0; i-- {
		f := st.Failures[i]
		fmt.Fprintf(w, "  %s  %s\n    from %s: %s\n", f.Time.UTC().Format("2006-01-02 15:04:05"), f.URL, f.Sources, f.Reason)
	}
	return nil
}

// opAge prints a duration coarsely, like the dashboard.
func opAge(d time.Duration) string {
	switch {
	case d < 0:
		return "future"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	}
	return fmt.Sprintf("%d d", int(d.Hours()/24))
}

// exitf is a cli.Exit with a formatted message.
func exitf(code int, format string, a ...any) error {
	return cli.Exit(fmt.Errorf(format, a...), code)
}

// stderrIsTerminal reports whether standard error is a terminal (progress
// bars are drawn only there).
func stderrIsTerminal() bool {
	fi, err := os.Stderr.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// withTrailingFlags lets flags follow the arguments, as in
// `pkgswarm setup apt --root /mnt` or `pkgswarm import DIR --strict`:
// urfave/cli v2 stops reading flags at the first argument and would take
// them for arguments. It returns a context whose flags are those parsed
// before the arguments plus those found among them.
func withTrailingFlags(c *cli.Context) (*cli.Context, error) {
	args := c.Args().Slice()
	if !slices.ContainsFunc(args, func(a string) bool { return len(a) > 1 && a[0] == '-' }) {
		return c, nil
	}
	takesValue := map[string]bool{}
	for _, f := range c.Command.Flags {
		if df, ok := f.(cli.DocGenerationFlag); ok {
			for _, n := range f.Names() {
				takesValue[n] = df.TakesValue()
			}
		}
	}
	var flags, pos []string
	for _, name := range c.LocalFlagNames() {
		flags = append(flags, fmt.Sprintf("--%s=%v", name, c.Value(name)))
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	fs := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(fs); err != nil {
			return nil, err
		}
	}
	if err := fs.Parse(append(append(flags, "--"), pos...)); err != nil {
		return nil, usageError(c, err, true)
	}
	var parent *cli.Context
	if l := c.Lineage(); len(l) > 1 {
		parent = l[1]
	}
	nc := cli.NewContext(c.App, fs, parent)
	nc.Command = c.Command
	nc.Context = c.Context
	return nc, nil
}
