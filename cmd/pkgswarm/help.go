package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// helpAnywhere makes -h and --help print a command's help, and do nothing
// else, wherever they stand on its command line. urfave/cli v2 reads a
// command's flags only up to its first argument and takes the rest for
// arguments, so `pkgswarm setup apt --help` used to set up apt; and given
// `pkgswarm completion --help bash` it looks for a subcommand "bash" to
// show the help of, and fails. So every command of the app, and each of
// their subcommands, gets a Before and an Action that look for the help flag
// among the arguments first (up to a "--"), and the app shows a command's
// own help when it finds no such subcommand.
func helpAnywhere(app *cli.App) {
	wrapHelp(app.Commands)
	app.CommandNotFound = func(c *cli.Context, name string) {
		if c.Command != nil && slices.Contains(allCommands(app.Commands), c.Command) {
			showCommandHelp(c)
			return
		}
		// `pkgswarm help NAME` with no command NAME.
		fmt.Fprintf(c.App.ErrWriter, "No help topic for '%v'\n\n", name)
		cli.ShowAppHelp(c)
	}
	if app.Action == nil {
		// Without an action the app would hand an unknown command to the
		// help machinery above.
		app.Action = func(c *cli.Context) error {
			if c.Args().Present() {
				return exitf(3, "no command %q (see pkgswarm --help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		}
	}
}

// allCommands lists cmds and their subcommands, each once (urfave/cli's
// help command is a subcommand of itself once it has run).
func allCommands(cmds []*cli.Command) []*cli.Command {
	var out []*cli.Command
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			if !slices.Contains(out, c) {
				out = append(out, c)
				walk(c.Subcommands)
			}
		}
	}
	walk(cmds)
	return out
}

// wrapHelp gives each of cmds and their subcommands the Before and Action
// of helpAnywhere.
func wrapHelp(cmds []*cli.Command) {
	for _, cmd := range cmds {
		wrapHelp(cmd.Subcommands)
		before, action := cmd.Before, cmd.Action
		if before != nil {
			cmd.Before = func(c *cli.Context) error {
				if helpAsked(c.Args().Slice()) {
					return nil // the action prints the help
				}
				return before(c)
			}
		}
		if action == nil {
			continue // urfave/cli shows the help itself
		}
		cmd.Action = func(c *cli.Context) error {
			if helpAsked(c.Args().Slice()) {
				return showCommandHelp(c)
			}
			return action(c)
		}
	}
}

// helpAsked reports whether args hold the help flag before any "--":
// -h, --help, -help, --h, or one of them =true.
func helpAsked(args []string) bool {
	if cli.HelpFlag == nil {
		return false
	}
	names := cli.HelpFlag.Names()
	for _, a := range args {
		if a == "--" {
			return false
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		for _, n := range names {
			if name != n {
				continue
			}
			if !hasVal {
				return true
			}
			if b, err := strconv.ParseBool(val); err == nil && b {
				return true
			}
		}
	}
	return false
}

// showCommandHelp prints what `pkgswarm CMD --help` prints.
func showCommandHelp(c *cli.Context) error {
	cmd := c.Command
	for _, sub := range cmd.Subcommands {
		if sub.Name != "help" {
			return cli.ShowSubcommandHelp(c)
		}
	}
	tmpl := cmd.CustomHelpTemplate
	if tmpl == "" {
		tmpl = cli.CommandHelpTemplate
	}
	cli.HelpPrinter(c.App.Writer, tmpl, cmd)
	return nil
}
