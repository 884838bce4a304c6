package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if completionAfterDashes(os.Args) {
		// urfave/cli runs the command itself when "--" precedes the
		// completion flag; a completion must never start a server.
		return
	}
	app := newApp()
	// Errors come back here and are printed once, with the program's name.
	app.ExitErrHandler = func(*cli.Context, error) {}
	if err := app.RunContext(ctx, os.Args); err != nil {
		code := 1
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "pkgswarm:", msg)
		}
		os.Exit(code)
	}
}

// completionAfterDashes reports whether args ask for shell completions
// (their last word is --generate-bash-completion) after a "--": urfave/cli
// then takes the request for a command line to run
// (checkShellCompleteFlag), so `pkgswarm serve -- <TAB>` would start serve.
func completionAfterDashes(args []string) bool {
	n := len(args)
	return n > 0 && args[n-1] == "--generate-bash-completion" && slices.Contains(args[:n-1], "--")
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
