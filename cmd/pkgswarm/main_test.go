package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/office"
)

// mainArgsEnv makes this test binary the pkgswarm command itself: main()
// with the arguments in the variable (a JSON array of strings, without the
// program name), or with the binary's own arguments when it is "-" (for a
// shell running it by the name pkgswarm). See pkgswarmCmd.
const mainArgsEnv = "PKGSWARM_TEST_MAIN_ARGS"

// TestMain lets the tests run the real command: as main() (mainArgsEnv),
// or, for the lab tests, re-executed as the CLI inside a lab namespace (see
// office.Child); in every other run it only runs the tests.
func TestMain(m *testing.M) {
	if raw, ok := os.LookupEnv(mainArgsEnv); ok {
		args := os.Args[1:]
		if raw != "-" {
			if err := json.Unmarshal([]byte(raw), &args); err != nil {
				fmt.Fprintf(os.Stderr, "%s is not a JSON array of strings: %v\n", mainArgsEnv, err)
				os.Exit(2)
			}
		}
		os.Unsetenv(mainArgsEnv)
		os.Args = append([]string{"pkgswarm"}, args...)
		main()
		os.Exit(0)
	}
	office.Child(func(ctx context.Context, argv []string) error {
		return newApp().RunContext(ctx, argv)
	})
	os.Exit(m.Run())
}
