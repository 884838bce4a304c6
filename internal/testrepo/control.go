package testrepo

import (
	"errors"
	"fmt"
	"strings"
)

// Field is one field of a deb822 paragraph. Value keeps continuation lines
// as they appear after the first line ("short\n long\n ."), without the
// trailing newline.
type Field struct {
	Name, Value string
}

// Paragraph is one deb822 stanza (a control file, one package of a Packages
// file, a Release file), fields in file order.
type Paragraph []Field

// Get returns the value of the first field called name (case-insensitive,
// as deb822 field names are) and whether it was present.
func (p Paragraph) Get(name string) (string, bool) {
	for _, f := range p {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// String renders the paragraph in deb822 form, ending in a newline.
func (p Paragraph) String() string {
	var b strings.Builder
	for _, f := range p {
		b.WriteString(f.Name)
		b.WriteByte(':')
		if f.Value != "" && !strings.HasPrefix(f.Value, "\n") {
			b.WriteByte(' ')
		}
		b.WriteString(f.Value)
		b.WriteByte('\n')
	}
	return b.String()
}

// ErrSyntax is wrapped by every error ParseParagraphs returns.
var ErrSyntax = errors.New("deb822 syntax error")

// ParseParagraphs parses deb822 text (Debian control files, Packages and
// Release files; see deb822(5)) into paragraphs. Paragraphs are separated by
// blank lines; a line starting with a space or tab continues the previous
// field; lines starting with '#' are comments. It does not handle an OpenPGP
// clearsigned wrapper: verify and strip that first.
func ParseParagraphs(text string) ([]Paragraph, error) {
	var (
		out []Paragraph
		cur Paragraph
	)
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
			cur = nil
		}
	}
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		line = strings.TrimSuffix(line, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == '#':
			// Comment: allowed in control files, ignored.
		case line[0] == ' ' || line[0] == '\t':
			if len(cur) == 0 {
				return nil, fmt.Errorf("%w: line %d: continuation line %q before any field", ErrSyntax, i+1, clip(line))
			}
			cur[len(cur)-1].Value += "\n" + line
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("%w: line %d: %q is neither a field (Name: value) nor a continuation line", ErrSyntax, i+1, clip(line))
			}
			if !validFieldName(name) {
				return nil, fmt.Errorf("%w: line %d: invalid field name %q", ErrSyntax, i+1, clip(name))
			}
			if _, dup := cur.Get(name); dup {
				return nil, fmt.Errorf("%w: line %d: field %q repeated in one paragraph", ErrSyntax, i+1, name)
			}
			cur = append(cur, Field{Name: name, Value: strings.TrimSpace(value)})
		}
	}
	flush()
	return out, nil
}

// validFieldName reports whether s is a deb822 field name: printable
// US-ASCII except ':' and space, not starting with '#' or '-'.
func validFieldName(s string) bool {
	if s == "" || s[0] == '-' || s[0] == '#' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == ':' {
			return false
		}
	}
	return true
}

func clip(s string) string {
	const max = 60
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
