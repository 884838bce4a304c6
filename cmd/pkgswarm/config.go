package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// The config file (/etc/pkgswarm/pkgswarm.toml, or --config) holds serve's
// settings: each key is the name of a serve flag, at the top level. It is
// read strictly: a key that names no setting (a typo, "cache_size" for
// "cache-size", a [table]) and a value of the wrong type are refused with
// the file, the key and what to write instead, so a misspelt setting is
// never silently ignored. import, verify and gc read the same file (only
// data-dir matters to them) and check it the same way.

// maxConfigSize bounds the config file read: a real one is a few KiB.
const maxConfigSize = 1 << 20

// loadConfigFile is the Before of the commands that read the config file:
// it applies its values under flags and environment variables (which win).
func loadConfigFile(flags []cli.Flag) cli.BeforeFunc {
	return func(c *cli.Context) error {
		path := c.String("config")
		if path == "" {
			if _, err := os.Stat(defaultConfigFile); err != nil {
				return nil
			}
			path = defaultConfigFile
		}
		values, err := readConfig(path)
		if err != nil {
			return cli.Exit(err, 2)
		}
		return altsrc.ApplyInputSourceValues(c, altsrc.NewMapInputSource(path, values), flags)
	}
}

// readConfig reads and checks the config file at path.
func readConfig(path string) (map[any]any, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config file %s: %v (give an existing file with --config, or none)", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("config file %s: larger than %d bytes: not a pkgswarm config file", path, maxConfigSize)
	}
	return parseConfig(path, data)
}

// configKey is one key the config file may hold.
type configKey struct {
	name    string
	kind    string // "string", "bool", "int", "duration", "list"
	example string // a value as written in TOML
}

// configKeys are serve's settings, by name: the schema of the config file
// whichever command reads it.
func configKeys() map[string]configKey {
	keys := map[string]configKey{}
	for _, f := range serveCommand().Flags {
		name, _, _, value, ok := tomlSetting(f)
		if !ok || name == "config" {
			continue
		}
		k := configKey{name: name, example: value}
		switch x := unwrapAltsrc(f).(type) {
		case *cli.BoolFlag:
			k.kind = "bool"
		case *cli.IntFlag, *cli.Int64Flag:
			k.kind = "int"
		case *cli.DurationFlag:
			k.kind = "duration"
		case *cli.StringSliceFlag:
			k.kind = "list"
			if value == "[]" {
				k.example = `["` + exampleValue(name) + `"]`
			}
		case *cli.StringFlag:
			k.kind = "string"
			if x.Value == "" {
				k.example = strconv.Quote(exampleValue(name))
			}
		default:
			continue
		}
		keys[name] = k
	}
	return keys
}

// exampleValue is a plausible value for a setting whose default is empty.
func exampleValue(name string) string {
	switch name {
	case "data-dir":
		return "/var/cache/pkgswarm"
	case "keyring", "rpm-key":
		return "/etc/pkgswarm/keys/archive.gpg"
	case "allow-clients":
		return "192.168.0.0/16"
	case "connect-allow":
		return "deb.example.org:443"
	case "mirror":
		return "http://deb.example.org/debian=http://mirror.example.net/debian"
	case "peer":
		return "http://10.0.0.2:3142"
	case "mdns-interface":
		return "eth0"
	case "swarm-bootstrap":
		return "10.1.0.2:6881"
	case "swarm-namespace":
		return "example-fleet/v1"
	}
	return "VALUE"
}

func unwrapAltsrc(f cli.Flag) cli.Flag {
	switch x := f.(type) {
	case *altsrc.StringFlag:
		return x.StringFlag
	case *altsrc.BoolFlag:
		return x.BoolFlag
	case *altsrc.DurationFlag:
		return x.DurationFlag
	case *altsrc.StringSliceFlag:
		return x.StringSliceFlag
	case *altsrc.IntFlag:
		return x.IntFlag
	case *altsrc.Int64Flag:
		return x.Int64Flag
	}
	return f
}

// parseConfig parses the config file data (named path in errors) into the
// values altsrc applies: string, bool and int values as such, durations as
// strings time.ParseDuration reads, lists as []any of strings. Every error
// is one line naming the file, and the key with what to write instead.
func parseConfig(path string, data []byte) (map[any]any, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config file %s, line %d: %s (the file is TOML: key = value, e.g. cache-size = \"10G\")",
				path, pe.Position.Line, oneLine(pe.Message))
		}
		return nil, fmt.Errorf("config file %s: %s", path, oneLine(err.Error()))
	}
	keys := configKeys()
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	slices.Sort(names)
	given := make([]string, 0, len(raw))
	for k := range raw {
		given = append(given, k)
	}
	slices.Sort(given)
	out := make(map[any]any, len(raw))
	for _, name := range given {
		v := raw[name]
		k, ok := keys[name]
		if !ok {
			return nil, unknownKey(path, name, v, names, keys)
		}
		val, ok := configValue(k, v)
		if !ok {
			return nil, fmt.Errorf("config file %s: key %q wants %s, not %s: e.g. %s = %s",
				path, name, kindPhrase(k.kind), tomlTypeOf(v), name, k.example)
		}
		out[name] = val
	}
	return out, nil
}

func unknownKey(path, name string, v any, names []string, keys map[string]configKey) error {
	what := fmt.Sprintf("unknown key %q", name)
	if _, table := v.(map[string]any); table {
		what = fmt.Sprintf("unknown table [%s] (every key is at the top level)", name)
	}
	near := ""
	if dashed := strings.ReplaceAll(name, "_", "-"); keys[dashed].name != "" {
		near = dashed
	} else {
		near = nearest(name, names)
	}
	if near != "" {
		return fmt.Errorf("config file %s: %s: did you mean %q? (e.g. %s = %s)", path, what, near, near, keys[near].example)
	}
	return fmt.Errorf("config file %s: %s: keys are the flag names of pkgswarm serve (see pkgswarm serve --help, or pkgswarm gendoc config)", path, what)
}

// configValue converts a decoded TOML value to what altsrc reads for k, or
// reports that it has the wrong type.
func configValue(k configKey, v any) (any, bool) {
	switch k.kind {
	case "string":
		s, ok := v.(string)
		return s, ok
	case "bool":
		b, ok := v.(bool)
		return b, ok
	case "int":
		n, ok := v.(int64)
		if !ok || n != int64(int(n)) {
			return nil, false
		}
		return int(n), true
	case "duration":
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		if _, err := time.ParseDuration(s); err != nil {
			return nil, false
		}
		return s, true
	case "list":
		if s, ok := v.(string); ok {
			return []any{s}, true // one value for a repeatable flag
		}
		list, ok := v.([]any)
		if !ok {
			return nil, false
		}
		out := make([]any, len(list))
		for i, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, false
			}
			out[i] = s
		}
		return out, true
	}
	return nil, false
}

func kindPhrase(kind string) string {
	switch kind {
	case "bool":
		return "true or false"
	case "int":
		return "a whole number"
	case "duration":
		return `a duration in quotes ("500ms", "27s", "2m")`
	case "list":
		return "a list of strings"
	}
	return "a string in quotes"
}

// tomlTypeOf names the TOML type of a decoded value, for errors.
func tomlTypeOf(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			x = x[:40] + "…"
		}
		return "the string " + strconv.Quote(x)
	case bool:
		return "a boolean"
	case int64:
		return "the number " + strconv.FormatInt(x, 10)
	case float64:
		return "a decimal number"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date"
	}
	return fmt.Sprintf("a %T", v)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
