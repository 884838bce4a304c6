package office

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/netlab"
)

// Apt is an isolated apt-get (aptenv.Client) that runs inside a lab host's
// network namespace, so its proxy address (e.g. http://127.0.0.1:3142) and
// sources resolve as they would on that machine. Its state directory is on
// the test's file system like any aptenv client. Run, Update, Download and
// Clean replace aptenv's, which would run apt-get in the test's namespace;
// the other methods (Archives, Lists, Reconfigure…) only touch files.
type Apt struct {
	*aptenv.Client
	host          *netlab.Host
	allowWarnings bool
}

// NewApt makes an apt client in dir (created if missing) that runs inside
// host's namespace.
func NewApt(host *netlab.Host, dir string, opts aptenv.Options) (*Apt, error) {
	c, err := aptenv.NewDir(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("office: apt client for %s: %w", host.Name(), err)
	}
	return &Apt{Client: c, host: host, allowWarnings: opts.AllowWarnings}, nil
}

// Command returns the exec.Cmd that runs `apt-get args...` in the host's
// namespace with the client's environment and directory, for callers that
// need to run it themselves (in the background, timed, many at once).
func (a *Apt) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := a.host.Command(ctx, "apt-get", args...)
	cmd.Env = a.Client.Env()
	cmd.Dir = a.Client.Dir
	return cmd
}

// Run runs apt-get with args in the host's namespace and returns its
// combined output. As aptenv.Client.Run: the error (an *aptenv.Error) is
// non-nil on a non-zero exit, an "E:" line or, unless warnings are allowed,
// a "W:" line.
func (a *Apt) Run(ctx context.Context, args ...string) (string, error) {
	cmd := a.Command(ctx, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	text := out.String()
	if err := aptenv.CheckOutput(text, a.allowWarnings); err != nil || runErr != nil {
		return text, &aptenv.Error{Args: args, Exit: runErr, Problems: aptProblems(text, a.allowWarnings), Output: text}
	}
	return text, nil
}

// Update runs apt-get update in the host's namespace.
func (a *Apt) Update(ctx context.Context) (string, error) { return a.Run(ctx, "update") }

// Download runs apt-get install --download-only for pkgs in the host's
// namespace, leaving the .deb files in ArchivesDir (see Archives).
func (a *Apt) Download(ctx context.Context, pkgs ...string) (string, error) {
	if len(pkgs) == 0 {
		return "", errors.New("apt-get download: no packages named")
	}
	return a.Run(ctx, append([]string{"install", "--download-only", "--yes", "--no-install-recommends"}, pkgs...)...)
}

// Clean empties ArchivesDir (apt-get clean).
func (a *Apt) Clean(ctx context.Context) error {
	_, err := a.Run(ctx, "clean")
	return err
}

// aptProblems returns the lines of apt output worth quoting in an error.
func aptProblems(out string, allowWarnings bool) []string {
	var ps []string
	for line := range strings.SplitSeq(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "E:") || strings.HasPrefix(line, "Err:") ||
			(!allowWarnings && strings.HasPrefix(line, "W:")) {
			ps = append(ps, line)
		}
	}
	return ps
}
