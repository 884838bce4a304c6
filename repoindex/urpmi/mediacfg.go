package urpmi

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Bounds of media.cfg: real ones are a few KiB, with some 50 sections of
// about 10 keys. The size bound alone would let 4 MiB of "[a1]" lines
// become a million media of some hundred bytes each.
const (
	maxMediaCfg      = 4 << 20
	maxMediaSections = 1024
	maxMediaKeys     = 16 << 10 // in all sections together
)

// MediaCfg is a parsed media/media_info/media.cfg.
type MediaCfg struct {
	// Info holds the [media_info] globals (version, arch, branch,
	// mediacfg_version, xml-info, ...), keys lower-cased.
	Info map[string]string
	// Media in file order.
	Media []*Medium
}

// Medium is one medium section of media.cfg.
type Medium struct {
	// Section is the section name: the medium's path under media/, e.g.
	// "core/release". It is a clean relative path (no "..", no leading "/").
	Section string
	// Keys holds every key of the section, keys lower-cased, values as
	// written.
	Keys map[string]string
	// Name is name=, e.g. "Core Release"; Section when absent.
	Name string
	// Synthesis, Hdlist and Pubkey are synthesis=, hdlist= and pubkey=, as
	// written ("" when absent; urpmi then uses
	// <Section>/media_info/synthesis.hdlist.cz and friends).
	Synthesis, Hdlist, Pubkey string
	// MediaType is media_type=, e.g. "release", "updates" or "debug:release".
	MediaType string
	// NoAuto is noauto=1: urpmi.addmedia --distrib skips the medium unless
	// asked for all media.
	NoAuto bool
	// UpdatesFor is updates_for=, the section this medium updates.
	UpdatesFor string
}

// SynthesisPath returns the slash path of the medium's synthesis relative
// to the media/ directory: <Section>/media_info/synthesis.hdlist.cz, where
// urpmi fetches it from for mediacfg_version 2 trees.
func (m *Medium) SynthesisPath() string {
	return path.Join(m.Section, "media_info", "synthesis.hdlist.cz")
}

// Medium returns the medium with the given section name, or nil.
func (c *MediaCfg) Medium(section string) *Medium {
	for _, m := range c.Media {
		if m.Section == section {
			return m
		}
	}
	return nil
}

// ParseMediaCfg parses media.cfg. Lines are "[section]", "key=value" (both
// sides trimmed) or a bare "key" (value "1"), blank, or comments starting
// with '#' or ';'. Keys before any section, a section given twice, a medium
// section that is not a clean relative path, and files over 4 MiB are
// errors.
func ParseMediaCfg(r io.Reader) (*MediaCfg, error) {
	c := &MediaCfg{Info: map[string]string{}}
	sc := bufio.NewScanner(io.LimitReader(r, maxMediaCfg+1))
	sc.Buffer(make([]byte, 0, 4096), maxMediaCfg+1)
	var cur map[string]string
	seen := map[string]bool{}
	total, keys := 0, 0
	for ln := 1; sc.Scan(); ln++ {
		total += len(sc.Bytes()) + 1
		if total > maxMediaCfg {
			return nil, fmt.Errorf("urpmi: media.cfg: %w: larger than %d bytes", repoindex.ErrTooLarge, maxMediaCfg)
		}
		line := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("urpmi: media.cfg line %d: unterminated section header %q", ln, line)
			}
			name := strings.TrimSpace(line[1 : len(line)-1])
			if name == "" {
				return nil, fmt.Errorf("urpmi: media.cfg line %d: empty section name", ln)
			}
			if seen[name] {
				return nil, fmt.Errorf("urpmi: media.cfg line %d: section [%s] appears twice", ln, clip(name))
			}
			if len(seen) == maxMediaSections {
				return nil, fmt.Errorf("urpmi: media.cfg line %d: %w: more than %d sections", ln, repoindex.ErrTooLarge, maxMediaSections)
			}
			seen[name] = true
			if name == "media_info" {
				cur = c.Info
				continue
			}
			if err := checkRelPath(name); err != nil {
				return nil, fmt.Errorf("urpmi: media.cfg line %d: medium [%s]: %v", ln, name, err)
			}
			med := &Medium{Section: name, Keys: map[string]string{}}
			c.Media = append(c.Media, med)
			cur = med.Keys
		default:
			if cur == nil {
				return nil, fmt.Errorf("urpmi: media.cfg line %d: %q outside any section", ln, line)
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				v = "1"
			}
			k = strings.ToLower(strings.TrimSpace(k))
			if k == "" {
				return nil, fmt.Errorf("urpmi: media.cfg line %d: empty key in %q", ln, line)
			}
			if keys++; keys > maxMediaKeys {
				return nil, fmt.Errorf("urpmi: media.cfg line %d: %w: more than %d keys", ln, repoindex.ErrTooLarge, maxMediaKeys)
			}
			cur[k] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("urpmi: read media.cfg: %w", err)
	}
	for _, m := range c.Media {
		m.Name = m.Keys["name"]
		if m.Name == "" {
			m.Name = m.Section
		}
		m.Synthesis = m.Keys["synthesis"]
		m.Hdlist = m.Keys["hdlist"]
		m.Pubkey = m.Keys["pubkey"]
		m.MediaType = m.Keys["media_type"]
		m.UpdatesFor = m.Keys["updates_for"]
		switch strings.ToLower(m.Keys["noauto"]) {
		case "", "0", "no", "false":
		default:
			m.NoAuto = true
		}
	}
	return c, nil
}

// checkRelPath accepts a clean, relative slash path without ".." segments.
func checkRelPath(p string) error {
	if strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return fmt.Errorf("not a relative path")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("path segment %q not allowed", seg)
		}
	}
	return nil
}
