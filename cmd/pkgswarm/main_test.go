package main

import (
	"context"
	"os"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/office"
)

// TestMain lets the lab tests re-execute this test binary as the real
// pkgswarm CLI inside a lab namespace (see office.Child); in every other
// run it only runs the tests.
func TestMain(m *testing.M) {
	office.Child(func(ctx context.Context, argv []string) error {
		return newApp().RunContext(ctx, argv)
	})
	os.Exit(m.Run())
}
