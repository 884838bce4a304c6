package office

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// childEnv carries a re-executed node's arguments (a JSON array of strings,
// without the program name) from the harness to Child.
const childEnv = "PKGSWARM_OFFICE_ARGS"

// Child turns the current process into an office node when the harness
// re-executed it (Program.Path == ""), and returns at once otherwise. Call it
// first thing in TestMain (or main) of any binary that uses the default
// Program:
//
//	func TestMain(m *testing.M) {
//		office.Child(func(ctx context.Context, argv []string) error {
//			return newApp().RunContext(ctx, argv)
//		})
//		os.Exit(m.Run())
//	}
//
// run gets an argv as os.Args would hold it (argv[0] is the program) and a
// context cancelled by SIGTERM or SIGINT. When it returns, Child exits the
// process: status 0 when run returned nil, else 1 after printing the error.
func Child(run func(ctx context.Context, argv []string) error) {
	raw, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	args, err := decodeArgs(raw)
	if err != nil {
		fmt.Fprintf(os.Stderr, "office child: %v\n", err)
		os.Exit(2)
	}
	// The node's own children (if any) must not think they are nodes.
	os.Unsetenv(childEnv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err = run(ctx, append([]string{os.Args[0]}, args...))
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "office child: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func encodeArgs(args []string) string {
	if args == nil {
		args = []string{}
	}
	b, err := json.Marshal(args)
	if err != nil {
		panic(err) // a []string always marshals
	}
	return string(b)
}

// decodeArgs parses the value of childEnv: a JSON array of strings.
func decodeArgs(raw string) ([]string, error) {
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		return nil, fmt.Errorf("%s is not a JSON array of strings: %w", childEnv, err)
	}
	if args == nil {
		return nil, errors.New(childEnv + " is null; want a JSON array of strings")
	}
	return args, nil
}
