package packaging

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Issue 15 item 10: packages built without -version carry the commit's tag,
// or the commit, not a bare "dev"; the maintainer is no placeholder.
func TestSourceVersion(t *testing.T) {
	need(t, "git")
	ctx := context.Background()
	if v := sourceVersion(ctx, t.TempDir()); v != "0.0.0~dev" {
		t.Errorf("outside a checkout: %q", v)
	}
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	git("commit", "-q", "--allow-empty", "-m", "one")
	if v := sourceVersion(ctx, dir); !regexp.MustCompile(`^0\.0\.0~dev\+g[0-9a-f]{12}$`).MatchString(v) {
		t.Errorf("untagged commit: %q", v)
	}
	git("tag", "v1.2.3")
	if v := sourceVersion(ctx, dir); v != "1.2.3" {
		t.Errorf("tagged commit: %q", v)
	}
	if strings.Contains(DefaultMaintainer, ".example") {
		t.Errorf("the default maintainer is a placeholder: %s", DefaultMaintainer)
	}
}
