package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2/altsrc"
)

// TestDefaultConfigIsTrue: the generated config names every serve flag,
// and with every line uncommented it parses and gives each flag its default.
func TestDefaultConfigIsTrue(t *testing.T) {
	out, _, err := runCLI(t, "gendoc", "config")
	if err != nil {
		t.Fatal(err)
	}
	uncommented := regexp.MustCompile(`(?m)^#([a-z0-9-]+ = )`).ReplaceAllString(out, "$1")
	file := filepath.Join(t.TempDir(), "pkgswarm.toml")
	if err := os.WriteFile(file, []byte(uncommented), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := altsrc.NewTomlSourceFromFile(file)
	if err != nil {
		t.Fatalf("the generated config does not parse: %v\n%s", err, uncommented)
	}
	n := 0
	for _, f := range serveCommand().Flags {
		name, _, _, _, ok := tomlSetting(f)
		if !ok {
			t.Errorf("serve flag %v has a type the config generator does not know", f.Names())
			continue
		}
		if name == "config" {
			continue
		}
		n++
		if !strings.Contains(out, "\n#"+name+" = ") {
			t.Errorf("the config lacks %s", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			var got, want any
			var gerr error
			switch x := f.(type) {
			case *altsrc.StringFlag:
				got, gerr = src.String(name)
				want = x.Value
			case *altsrc.BoolFlag:
				got, gerr = src.Bool(name)
				want = x.Value
			case *altsrc.DurationFlag:
				got, gerr = src.Duration(name)
				want = x.Value
			case *altsrc.StringSliceFlag:
				var v []string
				v, gerr = src.StringSlice(name)
				got, want = strings.Join(v, ","), ""
				if x.Value != nil {
					want = strings.Join(x.Value.Value(), ",")
				}
			case *altsrc.IntFlag:
				got, gerr = src.Int(name)
				want = x.Value
			default:
				t.Skipf("%T is not read from the config file", f)
			}
			if gerr != nil || got != want {
				t.Fatalf("config gives %s = %v (%v), the flag's default is %v", name, got, gerr, want)
			}
		})
	}
	if n < 10 {
		t.Fatalf("only %d serve settings in the config", n)
	}
}

func TestCompletionAndMan(t *testing.T) {
	t.Run("bash script", func(t *testing.T) {
		out, _, err := runCLI(t, "completion", "bash")
		if err != nil || !strings.Contains(out, "complete -o bashdefault -o default -F _pkgswarm pkgswarm") {
			t.Fatalf("completion bash: %v\n%s", err, out)
		}
		if _, err := exec.LookPath("bash"); err == nil {
			cmd := exec.Command("bash", "-n")
			cmd.Stdin = strings.NewReader(out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("bash -n: %v\n%s", err, b)
			}
		}
	})
	t.Run("candidates", func(t *testing.T) {
		// urfave/cli reads the word before the cursor from os.Args.
		saved := os.Args
		defer func() { os.Args = saved }()
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"--generate-bash-completion"}, []string{"serve", "status", "peers", "prefetch", "import", "verify", "gc", "setup", "completion"}},
			{[]string{"setup", "--generate-bash-completion"}, []string{"apt", "urpmi", "dnf"}},
			{[]string{"completion", "--generate-bash-completion"}, []string{"bash", "zsh", "fish"}},
		} {
			os.Args = append([]string{"pkgswarm"}, tc.args...)
			out, _, err := runCLI(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(`(?m)^` + w + `(:|$)`).MatchString(out) {
					t.Errorf("%v does not offer %q:\n%s", tc.args, w, out)
				}
			}
			if strings.Contains(out, "gendoc") {
				t.Errorf("the hidden gendoc command is offered")
			}
		}
	})
	t.Run("zsh and fish", func(t *testing.T) {
		for _, sh := range []string{"zsh", "fish"} {
			if out, _, err := runCLI(t, "completion", sh); err != nil || !strings.Contains(out, "pkgswarm") {
				t.Errorf("completion %s: %v\n%s", sh, err, out)
			}
		}
		if _, _, err := runCLI(t, "completion", "tcsh"); err == nil || !strings.Contains(err.Error(), "bash, zsh or fish") {
			t.Errorf("completion tcsh: %v", err)
		}
	})
	t.Run("man page", func(t *testing.T) {
		out, _, err := runCLI(t, "gendoc", "man")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{".TH pkgswarm 8", "setup", "prefetch", "--cache-size", "--undo"} {
			if !strings.Contains(out, w) {
				t.Errorf("man page lacks %q", w)
			}
		}
	})
}
