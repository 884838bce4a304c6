package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is pkgswarm's version: set at build time with -ldflags
// "-X main.version=..." (the packages do), else read from the build
// information Go records (see buildVersion).
var version string

func init() { version = buildVersion(version, readBuildInfo()) }

func readBuildInfo() *debug.BuildInfo {
	info, _ := debug.ReadBuildInfo()
	return info
}

// buildVersion is the version a binary reports: the one stamped at link
// time; else the module's version when it was built as a dependency or
// with `go install …@version` (v0.3.1), or from a tagged checkout (Go 1.24
// and later derive it from the VCS: v0.3.1, or a pseudo-version such as
// v0.3.2-0.20261206135300-0123456789ab, "+dirty" for uncommitted changes);
// else the commit it was built from ("dev-0123456789ab", "+dirty"); else
// "dev" (go run, go test).
func buildVersion(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info == nil {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		return "dev-" + rev[:min(12, len(rev))] + dirty
	}
	return "dev"
}

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
