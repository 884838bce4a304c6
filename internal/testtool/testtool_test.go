package testtool

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A missing tool skips outside CI and fails under CI=true; a present one
// is found. The verdicts are read from a child test process, since a
// skipped or failed test cannot be observed from inside itself.
func TestNeed(t *testing.T) {
	if os.Getenv("TESTTOOL_CHILD") != "" {
		Need(t, os.Getenv("TESTTOOL_CHILD"), "some-package")
		return
	}
	for _, tc := range []struct {
		tool, ci, want string
		fail           bool
	}{
		{"pkgswarm-no-such-tool", "", "--- SKIP", false},
		{"pkgswarm-no-such-tool", "true", "--- FAIL", true},
		{"sh", "true", "--- PASS", false},
	} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestNeed$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTTOOL_CHILD="+tc.tool, "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fail || !strings.Contains(string(out), tc.want) {
			t.Errorf("Need(%q) with CI=%q: err %v, want %q in:\n%s", tc.tool, tc.ci, err, tc.want, out)
		}
		if !strings.Contains(string(out), "some-package") && tc.want != "--- PASS" {
			t.Errorf("Need(%q): the message does not name the Debian package:\n%s", tc.tool, out)
		}
	}
}
