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
	refuseArguments(app.Commands) // inside wrapHelp's check: help anywhere wins
	wrapHelp(app.Commands)
	app.OnUsageError = usageError
	app.CommandNotFound = func(c *cli.Context, name string) {
		if c.Command != nil && slices.Contains(allCommands(app.Commands), c.Command) {
			showCommandHelp(c)
			return
		}
		// `pkgswarm help NAME` with no command NAME: the help command
		// cannot return an error, so this is where it ends.
		fmt.Fprintf(c.App.ErrWriter, "pkgswarm: %v\n", unknownCommand(app.Commands, name))
		cli.OsExiter(3)
	}
	if app.Action == nil {
		// Without an action the app would hand an unknown command to the
		// help machinery above.
		app.Action = func(c *cli.Context) error {
			if c.Args().Present() {
				return cli.Exit(unknownCommand(app.Commands, c.Args().First()), 3)
			}
			return cli.ShowAppHelp(c)
		}
	}
}

// refuseArguments makes every command that takes no arguments (no
// ArgsUsage, no subcommands) refuse them with a usage error. urfave/cli v2
// stops reading flags at the first argument, so without this
// `pkgswarm serve cache --listen 127.0.0.1:3142` would drop the flags after
// "cache" without a word and serve on the defaults.
func refuseArguments(cmds []*cli.Command) {
	for _, cmd := range cmds {
		if len(cmd.Subcommands) > 0 {
			refuseArguments(cmd.Subcommands)
			continue
		}
		if strings.TrimSpace(cmd.ArgsUsage) != "" || cmd.Action == nil {
			continue
		}
		action := cmd.Action
		cmd.Action = func(c *cli.Context) error {
			if c.Args().Present() {
				var got []string
				for _, a := range c.Args().Slice() {
					got = append(got, strconv.Quote(a))
				}
				return cli.Exit(fmt.Sprintf("%s takes no arguments, got %s; flags after the first argument are not read (see pkgswarm %s --help)",
					c.Command.Name, strings.Join(got, " "), c.Command.Name), 2)
			}
			return action(c)
		}
	}
}

// unknownCommand is the error for a command name that is none of cmds,
// with the nearest visible one as a suggestion when one is near.
func unknownCommand(cmds []*cli.Command, name string) error {
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	if near := nearest(name, names); near != "" {
		return fmt.Errorf("unknown command %q: did you mean %q? (see pkgswarm --help)", name, near)
	}
	return fmt.Errorf("unknown command %q (see pkgswarm --help for the commands)", name)
}

// usageError is every command's OnUsageError: the parse error once, with
// the nearest flag for an unknown one and where the help is, instead of
// urfave/cli's "Incorrect Usage" around the whole help text and the error
// again after it.
func usageError(c *cli.Context, err error, _ bool) error {
	cmd, prefix := "pkgswarm", ""
	flags := c.App.Flags
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		cmd += " " + c.Command.Name
		prefix = c.Command.Name + ": "
		flags = c.Command.Flags
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		var names []string
		for _, f := range flags {
			names = append(names, f.Names()...)
		}
		msg = "unknown flag " + dashes(name)
		if near := nearest(name, names); near != "" {
			msg += ": did you mean " + dashes(near) + "?"
		}
	}
	return cli.Exit(fmt.Sprintf("%s%s (see %s --help)", prefix, msg, cmd), 2)
}

// dashes writes a flag name as it is typed: -h, --listen.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// nearest returns the candidate closest to s by edit distance, or "" when
// none is close enough to be what was meant (at most a third of the
// longer word's letters differ, or s is a prefix of exactly one).
func nearest(s string, candidates []string) string {
	best, bestD := "", -1
	var prefixed []string
	for _, c := range candidates {
		if strings.HasPrefix(c, s) && s != "" {
			prefixed = append(prefixed, c)
		}
		d := editDistance(s, c)
		if limit := max(1, max(len(s), len(c))/3); d <= limit && (bestD < 0 || d < bestD) {
			best, bestD = c, d
		}
	}
	if best == "" && len(prefixed) == 1 {
		return prefixed[0]
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, with a transposition
// of two adjacent letters counting as one edit ("stauts").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
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
		// No "help, h" subcommand listed under a command: -h is the way,
		// and it is listed among the flags.
		cmd.HideHelpCommand = true
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = usageError
		}
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
