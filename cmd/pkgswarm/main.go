package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			fmt.Fprintln(os.Stderr, "pkgswarm:", err)
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "pkgswarm:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	app := &cli.App{
		Name:                 "pkgswarm",
		Usage:                "apt/urpmi caching proxy backed by LAN peers and a BitTorrent swarm, verifying every byte",
		Version:              version,
		EnableBashCompletion: true,
		Commands: append([]*cli.Command{
			serveCommand(),
			magnetCommand(),
		}, operatorCommands()...),
	}
	helpAnywhere(app)
	return app
}
