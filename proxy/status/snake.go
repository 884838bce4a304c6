package status

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"time"
	"unicode"
)

// The status document is snake_case throughout, whoever fills its open
// sections (Node.Peers, Node.Extra): those values belong to other
// packages (discovery's peers, the swarm's stats), whose structs carry no
// JSON tags. snakeValue turns such a value into what encoding/json writes
// with snake_case keys, absent dates left out, and empty lists written
// as [] and empty maps as {}, never null. It walks the Go value (not its
// JSON), so it knows a nil slice from a nil map.

// snakeValue returns v as plain JSON values (map[string]any, []any,
// strings, numbers, booleans), ready to encode.
func snakeValue(v any) any {
	if v == nil {
		return nil
	}
	return snakeReflect(reflect.ValueOf(v))
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	textType      = reflect.TypeFor[encoding.TextMarshaler]()
)

func snakeReflect(v reflect.Value) any {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	t := v.Type()
	if t == timeType {
		tm := v.Interface().(time.Time)
		if tm.IsZero() {
			return nil
		}
		return tm.Format(time.RFC3339Nano)
	}
	if t.Implements(marshalerType) || t.Implements(textType) {
		if t.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		return v.Interface() // net.IP, netip.Addr: as they encode themselves
	}
	switch v.Kind() {
	case reflect.Struct:
		out := map[string]any{}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, omit := snakeName(f)
			if name == "-" {
				continue
			}
			val := snakeReflect(v.Field(i))
			if val == nil && (omit || f.Type == timeType) {
				continue // absent: left out, not null
			}
			if val == nil {
				continue
			}
			out[name] = val
		}
		return out
	case reflect.Map:
		out := make(map[string]any, v.Len())
		it := v.MapRange()
		for it.Next() {
			k := it.Key()
			key := ""
			if k.Kind() == reflect.String {
				key = k.String()
			} else if tm, ok := k.Interface().(encoding.TextMarshaler); ok {
				b, _ := tm.MarshalText()
				key = string(b)
			} else {
				b, _ := json.Marshal(k.Interface())
				key = strings.Trim(string(b), `"`)
			}
			out[key] = snakeReflect(it.Value())
		}
		return out
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			return v.Interface() // []byte: base64, as encoding/json does
		}
		out := make([]any, v.Len())
		for i := range v.Len() {
			out[i] = snakeReflect(v.Index(i))
		}
		return out
	}
	return v.Interface()
}

// snakeName is the key of field f: its json tag's name when it has one,
// else its Go name in snake_case ("LastSeen" → "last_seen", "TXT" →
// "txt", "InfoHash" → "info_hash"); omit reports omitempty or omitzero.
func snakeName(f reflect.StructField) (name string, omit bool) {
	tag := f.Tag.Get("json")
	name, opts, _ := strings.Cut(tag, ",")
	omit = strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
	if name == "" {
		name = snakeCase(f.Name)
	}
	return name, omit
}

func snakeCase(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			// A word starts at an upper-case letter that follows a lower
			// one, or that precedes a lower one after an acronym.
			if i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]) ||
				(i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1]))) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
