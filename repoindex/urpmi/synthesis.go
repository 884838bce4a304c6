package urpmi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
)

// maxSynthesisLine bounds one synthesis line. The longest real lines
// (@provides@ and @files@ of large packages) are some hundred KiB; a line
// costs at most about three times this while it is read.
const maxSynthesisLine = 8 << 20

// SynthEntry is one package of a synthesis file.
type SynthEntry struct {
	// NEVRA is the @info@ full name, name-version-release.arch; the rpm is
	// <medium>/<NEVRA>.rpm.
	NEVRA                        string
	Name, Version, Release, Arch string
	Epoch                        int
	// FileSize is the exact .rpm size from @filesize@, or -1 when the entry
	// has no @filesize@ line (synthesis files from before 2008). Without a
	// size an rpm must not be taken from peers.
	FileSize int64
}

// ErrCompressed is returned (wrapped) when ParseSynthesis is handed
// compressed bytes.
var ErrCompressed = errors.New("synthesis is still compressed")

// ParseSynthesis reads a decompressed synthesis.hdlist and calls fn once per
// package, in file order, when its @info@ line is read. Lines are
// "@tag@field@field..."; a package's lines end with
// "@info@NEVRA@epoch@installedsize@group[@...]" and @filesize@<bytes> may
// come before it. Tags other than info and filesize (provides, requires,
// summary, ...) are skipped. An error from fn stops parsing and is returned
// as is; parse errors name the line.
func ParseSynthesis(r io.Reader, fn func(e SynthEntry) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	if head, _ := br.Peek(13); decompress.Detect(head) != "" {
		return fmt.Errorf("urpmi: %w (%s): decompress it first, e.g. with ParseSynthesisCompressed",
			ErrCompressed, decompress.Detect(head))
	}
	fileSize := int64(-1)
	for ln := 1; ; ln++ {
		line, err := readLine(br, maxSynthesisLine)
		if err == io.EOF {
			if fileSize >= 0 {
				return fmt.Errorf("urpmi: synthesis ends after @filesize@ without an @info@ line")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("urpmi: synthesis line %d: %w", ln, err)
		}
		if len(line) == 0 {
			continue
		}
		if line[0] != '@' {
			return fmt.Errorf("urpmi: synthesis line %d: does not start with '@': %q", ln, clip(string(line)))
		}
		tag, rest, _ := bytes.Cut(line[1:], []byte("@"))
		switch string(tag) {
		case "filesize":
			n, err := strconv.ParseInt(string(rest), 10, 64)
			if err != nil || n <= 0 {
				return fmt.Errorf("urpmi: synthesis line %d: bad @filesize@ %q", ln, clip(string(rest)))
			}
			fileSize = n
		case "info":
			e, err := parseInfo(string(rest)) // one copy of the line, no more
			if err != nil {
				return fmt.Errorf("urpmi: synthesis line %d: %v", ln, err)
			}
			e.FileSize = fileSize
			fileSize = -1
			if err := fn(e); err != nil {
				return err
			}
		case "":
			return fmt.Errorf("urpmi: synthesis line %d: empty tag", ln)
		}
	}
}

// MaxSynthesis bounds the decompressed size ParseSynthesisCompressed
// accepts; Mageia's largest medium synthesis is some tens of MiB.
const MaxSynthesis = 1 << 30

// ParseSynthesisCompressed is ParseSynthesis on a synthesis.hdlist.cz as
// served: gzip, xz, zstd or bzip2, recognised by magic (uncompressed input
// is read as is), at most MaxSynthesis bytes once decompressed.
func ParseSynthesisCompressed(r io.Reader, fn func(e SynthEntry) error) error {
	rc, err := decompress.SniffLimit(r, MaxSynthesis)
	if err != nil {
		return fmt.Errorf("urpmi: synthesis: %w", err)
	}
	defer rc.Close()
	return ParseSynthesis(rc, fn)
}

// parseInfo parses "NEVRA@epoch@size@group[@more]". It splits off the two
// fields it uses only: a line of millions of '@' costs nothing.
func parseInfo(s string) (SynthEntry, error) {
	nevra, rest, ok := strings.Cut(s, "@")
	if !ok {
		return SynthEntry{}, fmt.Errorf("@info@ needs NEVRA and epoch, got %q", clip(s))
	}
	epoch, _, _ := strings.Cut(rest, "@")
	e, err := ParseNEVRA(nevra)
	if err != nil {
		return SynthEntry{}, err
	}
	if epoch != "" {
		ep, err := strconv.Atoi(epoch)
		if err != nil || ep < 0 {
			return SynthEntry{}, fmt.Errorf("@info@ %s: bad epoch %q", e.NEVRA, clip(epoch))
		}
		e.Epoch = ep
	}
	return e, nil
}

// ParseNEVRA splits "name-version-release.arch" (no epoch, as urpmi and rpm
// file names write it). Names may contain '-'; version and release may not.
// Every part must be non-empty and free of '/', '@', NUL and whitespace.
func ParseNEVRA(nevra string) (SynthEntry, error) {
	bad := func(why string) (SynthEntry, error) {
		return SynthEntry{}, fmt.Errorf("NEVRA %q: %s", clip(nevra), why)
	}
	if nevra == "" {
		return bad("empty")
	}
	if strings.ContainsAny(nevra, "/@\x00 \t\r\n") {
		return bad("contains '/', '@', NUL or whitespace")
	}
	dot := strings.LastIndexByte(nevra, '.')
	if dot < 0 {
		return bad("no .arch")
	}
	nvr, arch := nevra[:dot], nevra[dot+1:]
	rd := strings.LastIndexByte(nvr, '-')
	if rd < 0 {
		return bad("no -release")
	}
	vd := strings.LastIndexByte(nvr[:rd], '-')
	if vd < 0 {
		return bad("no -version")
	}
	e := SynthEntry{
		NEVRA:   nevra,
		Name:    nvr[:vd],
		Version: nvr[vd+1 : rd],
		Release: nvr[rd+1:],
		Arch:    arch,
	}
	if e.Name == "" || e.Version == "" || e.Release == "" || e.Arch == "" {
		return bad("empty name, version, release or arch")
	}
	return e, nil
}

// readLine returns the next line without its '\n', or io.EOF at the end. A
// final line without '\n' is returned too.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(long)+len(chunk) > max+1 {
			return nil, fmt.Errorf("%w: line longer than %d bytes", repoindex.ErrTooLarge, max)
		}
		switch err {
		case nil:
			if long != nil {
				return bytes.TrimSuffix(append(long, chunk...), []byte("\n")), nil
			}
			return chunk[:len(chunk)-1], nil
		case bufio.ErrBufferFull:
			if n := len(long) + len(chunk); n > cap(long) {
				// Double: append grows by 25% past 256 elements, leaving
				// many copies of a long line behind.
				grown := make([]byte, len(long), 2*cap(long)+len(chunk))
				copy(grown, long)
				long = grown
			}
			long = append(long, chunk...)
		case io.EOF:
			long = append(long, chunk...)
			if len(long) == 0 {
				return nil, io.EOF
			}
			return long, nil
		default:
			return nil, err
		}
	}
}
