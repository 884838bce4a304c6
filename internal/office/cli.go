package office

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"github.com/pkgswarm/pkgswarm/internal/netlab"
)

// CLICommand returns a command that runs the current executable as the
// pkgswarm CLI with args (without the program name) inside host's network
// namespace, as a user would run `pkgswarm magnet …` on that machine. The
// executable must call Child first thing (TestMain or main), as for nodes of
// the default Program. The environment is the test's without proxy and
// PKGSWARM_ variables; the caller may extend cmd.Env.
func CLICommand(ctx context.Context, host *netlab.Host, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("office: find the current executable to run as the CLI: %w", err)
	}
	cmd := host.Command(ctx, exe)
	cmd.Env = append(cleanEnv(os.Environ()), childEnv+"="+encodeArgs(args))
	return cmd, nil
}
