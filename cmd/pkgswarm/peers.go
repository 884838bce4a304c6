package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgswarm/pkgswarm/proxy/status"
)

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:      "peers",
		Usage:     "list a running node's LAN peers with their addresses and health",
		ArgsUsage: " ",
		Flags:     []cli.Flag{serverFlag(), &cli.BoolFlag{Name: "json", Usage: "print the peer table as JSON"}},
		Action: func(c *cli.Context) error {
			_, st, err := fetchNodeStatus(c.Context, c.String("server"))
			if err != nil {
				return cli.Exit(err, 1)
			}
			peers := st.Peers
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(peers)
			}
			return printPeers(c.App.Writer, peers, st.Time)
		},
	}
}

func printPeers(w io.Writer, peers []status.Peer, now time.Time) error {
	if len(peers) == 0 {
		_, err := fmt.Fprintln(w, "no LAN peers (none found by mDNS, no --peer given, or all banned)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HEALTH\tNODE\tURL\tADDRESSES\tFOUND BY\tLAST SEEN\tFAILURES")
	for _, p := range peers {
		health := "healthy"
		if !p.Healthy {
			health = "UNHEALTHY"
		}
		addrs := p.Addrs
		seen := "-"
		if !p.LastSeen.IsZero() {
			seen = opAge(now.Sub(p.LastSeen)) + " ago"
		}
		id := p.ID
		if len(id) > 16 {
			id = id[:16]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", health, id, p.URL, strings.Join(addrs, ","), p.Source, seen, p.Failures)
	}
	return tw.Flush()
}
