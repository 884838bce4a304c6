package aptenv_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
)

func TestCheckOutput(t *testing.T) {
	for _, tc := range []struct {
		name          string
		out           string
		allowWarnings bool
		want          []error // kinds that must be reported
		wantNil       bool
	}{
		{name: "clean", out: "Get:1 http://x stable InRelease [1262 B]\nReading package lists...\n", wantNil: true},
		{name: "warning", out: "W: Target Packages is configured multiple times\n", want: []error{aptenv.ErrAptWarning}},
		{name: "warning allowed", out: "W: something\n", allowWarnings: true, wantNil: true},
		{name: "bad signature",
			out:  "W: GPG error: http://x stable InRelease: The following signatures were invalid: BADSIG 1\nE: The repository 'http://x stable InRelease' is not signed.\n",
			want: []error{aptenv.ErrSignature, aptenv.ErrAptError, aptenv.ErrAptWarning}},
		{name: "hash sum", out: "E: Failed to fetch http://x/p.deb  Hash Sum mismatch\n", want: []error{aptenv.ErrHashSum, aptenv.ErrAptError}},
		{name: "size", out: "E: Failed to fetch http://x/p.deb  File has unexpected size (3 != 4).\n", want: []error{aptenv.ErrHashSum}},
		{name: "expired", out: "E: Release file for http://x/dists/s/InRelease is expired (invalid since 1d 0h 0min 1s). Updates for this repository will not be applied.\n",
			want: []error{aptenv.ErrExpired, aptenv.ErrAptError}},
		{name: "not yet valid", out: "E: Release file for http://x/dists/s/InRelease is not valid yet (invalid for another 2d). Updates for this repository will not be applied.\n",
			want: []error{aptenv.ErrExpired}},
		{name: "indented", out: "   E: x\n", want: []error{aptenv.ErrAptError}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := aptenv.CheckOutput(tc.out, tc.allowWarnings)
			if tc.wantNil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("got nil error")
			}
			for _, k := range tc.want {
				if !errors.Is(err, k) {
					t.Errorf("%v does not report %v", err, k)
				}
			}
		})
	}
}

func FuzzCheckOutput(f *testing.F) {
	for _, s := range []string{"", "E: x", "W: GPG error: y\nE: z is not signed.", "Hash Sum mismatch", "\n\n\r\n", strings.Repeat("x", 70000)} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, out string, allow bool) {
		err := aptenv.CheckOutput(out, allow)
		if err == nil {
			if strings.HasPrefix(strings.TrimSpace(out), "E:") || strings.Contains(out, "\nE:") {
				t.Fatalf("an E: line passed: %q", out)
			}
			return
		}
		if err.Error() == "" {
			t.Fatal("empty error message")
		}
		if !errors.Is(err, aptenv.ErrAptError) && !errors.Is(err, aptenv.ErrAptWarning) &&
			!errors.Is(err, aptenv.ErrHashSum) && !errors.Is(err, aptenv.ErrSignature) && !errors.Is(err, aptenv.ErrExpired) {
			t.Fatalf("error %v has no kind", err)
		}
	})
}

func TestParseConfigDump(t *testing.T) {
	in := `APT "";
APT::Architecture "amd64";
APT::Architectures:: "amd64";
APT::Architectures:: "i386";
Dir::Etc::main "/x/etc/main.conf";
Quoted::Value "a "b" c";
Bare;
`
	m, err := aptenv.ParseConfigDump(in)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"apt::architecture":    "amd64",
		"apt::architectures::": "amd64\ni386",
		"dir::etc::main":       "/x/etc/main.conf",
		"quoted::value":        `a "b" c`,
		"apt":                  "",
		"bare":                 "",
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, want)
		}
	}
	for _, bad := range []string{"Key value\n", "Key \"unterminated\n", "Key\n"} {
		if _, err := aptenv.ParseConfigDump(bad); err == nil {
			t.Errorf("ParseConfigDump(%q) accepted bad input", bad)
		}
	}
}

func FuzzParseConfigDump(f *testing.F) {
	for _, s := range []string{"", "A \"b\";\n", "A:: \"1\";\nA:: \"2\";\n", "A;\n", "A b\n", "A \"\";"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, err := aptenv.ParseConfigDump(in)
		if err != nil {
			if !strings.Contains(err.Error(), "apt-config dump line") {
				t.Fatalf("error %q does not say where", err)
			}
			return
		}
		for k := range m {
			if k != strings.ToLower(k) {
				t.Fatalf("key %q not lower-cased", k)
			}
		}
	})
}
