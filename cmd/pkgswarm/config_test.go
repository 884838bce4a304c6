package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2/altsrc"
)

// FuzzParseConfig (issue 11 asks for a fuzz target per parser): whatever
// the bytes, parseConfig never panics; what it accepts holds only serve's
// keys with values of their flag's type (altsrc reads each without error);
// what it refuses is one line naming the file.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(defaultConfigTOML(serveCommand().Flags)))
	for _, s := range []string{
		"listen = \":3142\"\ncache-size = \"10G\"\nmdns = false\n",
		"keyring = [\"/a\", \"/b\"]\npeer = \"http://10.0.0.2:3142\"\n",
		"revalidate = \"27s\"\norigin-connections = 4\n",
		"cache_size = 10\n", "[swarm]\nmode = \"off\"\n", "listen = \n", "a.b = 1\n",
		"origin-connections = 99999999999999999999\n", "hold = \"forever\"\n",
	} {
		f.Add([]byte(s))
	}
	keys := configKeys()
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "/etc/pkgswarm/fuzz.toml"
		values, err := parseConfig(path, data)
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, path) || strings.Contains(msg, "\n") || strings.Contains(msg, "inner error") {
				t.Fatalf("error is not one line naming the file: %q", msg)
			}
			return
		}
		src := altsrc.NewMapInputSource(path, values)
		for k := range values {
			name, _ := k.(string)
			key, ok := keys[name]
			if !ok {
				t.Fatalf("accepted unknown key %q", name)
			}
			var rerr error
			switch key.kind {
			case "string":
				_, rerr = src.String(name)
			case "bool":
				_, rerr = src.Bool(name)
			case "int":
				_, rerr = src.Int(name)
			case "duration":
				_, rerr = src.Duration(name)
			case "list":
				_, rerr = src.StringSlice(name)
			}
			if rerr != nil {
				t.Fatalf("accepted %s = %v, which altsrc cannot read: %v", name, values[k], rerr)
			}
		}
	})
}

// The generated config file, every setting uncommented, passes the strict
// reading: the packaged /etc/pkgswarm/pkgswarm.toml can be edited in place.
func TestGeneratedConfigIsStrictlyValid(t *testing.T) {
	t.Parallel()
	conf := regexp.MustCompile(`(?m)^#([a-z0-9-]+ = )`).ReplaceAllString(defaultConfigTOML(serveCommand().Flags), "$1")
	values, err := parseConfig("pkgswarm.toml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	if len(values) != len(configKeys()) {
		t.Errorf("%d settings read, serve has %d", len(values), len(configKeys()))
	}
}
