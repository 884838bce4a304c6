package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/urfave/cli/v2"

	"github.com/pkgswarm/pkgswarm/proxy"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
)

func importCommand() *cli.Command {
	flags := append(offlineFlags(),
		&cli.BoolFlag{Name: "strict", Usage: "exit with status 1 when any file is refused (default: report refusals, exit 0)"})
	return &cli.Command{
		Name:      "import",
		Usage:     "add existing .deb files (e.g. /var/cache/apt/archives) to the cache, each only if a verified root lists its digest (serve must be stopped)",
		ArgsUsage: "DIR...",
		Description: "Hashes every .deb under each DIR and adds it to the cache when the Packages index of a\n" +
			"repository whose signed root pkgswarm has verified lists that SHA-256: the same proof a\n" +
			"download must pass. Other files (tampered, from a repository pkgswarm has not seen yet, or\n" +
			"superseded by a newer root) are refused and listed; run apt-get update through pkgswarm\n" +
			"first so it knows the repositories. .rpm files are not imported yet.\n\n" + offlineNote +
			"\nThe .deb files are then read as that user too.",
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runImport,
	}
}

// debRef is where a verified root lists a package.
type debRef struct {
	url  string
	size int64
}

func runImport(c *cli.Context) error {
	c, err := withTrailingFlags(c)
	if err != nil {
		return cli.Exit(err, 2)
	}
	if c.NArg() == 0 {
		return exitf(2, "import: name a directory of .deb files, e.g. pkgswarm import /var/cache/apt/archives")
	}
	var files []string
	for _, dir := range c.Args().Slice() {
		// Absolute: opening the store may move the process into the data
		// directory (see runAsDataDirOwner).
		root, err := filepath.Abs(dir)
		if err != nil {
			return exitf(1, "import: %s: %w", dir, err)
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "partial" && p != root {
				return filepath.SkipDir // apt's unfinished downloads
			}
			if d.Type().IsRegular() && (strings.HasSuffix(p, ".deb") || strings.HasSuffix(p, ".udeb") || strings.HasSuffix(p, ".rpm")) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return exitf(1, "import: reading %s: %w", dir, err)
		}
	}
	st, err := openStoreOffline(c)
	if err != nil {
		return cli.Exit(err, 1)
	}
	defer st.Close()
	listed, err := verifiedPackages(st)
	if err != nil {
		return exitf(1, "import: %w", err)
	}
	if len(listed) == 0 {
		return exitf(1, "import: the cache knows no package of a verified repository yet: run apt-get update through pkgswarm first, then import again")
	}

	var total int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	bar := newProgressBar(c.App.ErrWriter, "import", total, stderrIsTerminal())
	var added, held, refused int
	var addedBytes int64
	out := c.App.Writer
	for _, f := range files {
		res, n, err := importOne(st, listed, f, bar)
		switch {
		case err != nil:
			refused++
			if errors.Is(err, fs.ErrPermission) {
				err = fmt.Errorf("%w (pkgswarm reads it as %s, the owner of the cache: make it readable to that user)", err, userName(os.Geteuid()))
			}
			bar.Finish()
			fmt.Fprintf(out, "refused %s: %v\n", f, err)
		case res == importAdded:
			added++
			addedBytes += n
		case res == importHeld:
			held++
		}
	}
	bar.Finish()
	fmt.Fprintf(out, "imported %d files (%s), %d already cached, %d refused\n", added, proxy.FormatBytes(addedBytes), held, refused)
	if refused > 0 && c.Bool("strict") {
		return exitf(1, "import: %d files refused (listed above)", refused)
	}
	return nil
}

type importResult int

const (
	importAdded importResult = iota + 1
	importHeld
)

// importOne adds the file at p when a verified root lists its digest.
func importOne(st *store.Store, listed map[store.Digest]debRef, p string, bar *progressBar) (importResult, int64, error) {
	if strings.HasSuffix(p, ".rpm") {
		return 0, 0, errors.New("importing .rpm files is not supported yet (their proof is the rpm signature, checked when fetched through pkgswarm)")
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	bar.Add(n)
	if err != nil {
		return 0, 0, fmt.Errorf("reading: %w", err)
	}
	d := store.Digest(h.Sum(nil))
	ref, ok := listed[d]
	if !ok {
		return 0, 0, fmt.Errorf("no verified root lists sha256 %s: the file was altered, or its repository is unknown to pkgswarm (run apt-get update through it) or has moved on to a newer version", d)
	}
	if ref.size >= 0 && ref.size != n {
		return 0, 0, fmt.Errorf("%s lists %d bytes, the file has %d", ref.url, ref.size, n)
	}
	if st.HasBlob(d) {
		return importHeld, n, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	w, err := st.NewWriter()
	if err != nil {
		return 0, 0, err
	}
	if _, err := io.Copy(w, f); err != nil {
		w.Abort(err)
		return 0, 0, fmt.Errorf("copying into the cache: %w", err)
	}
	if err := w.Commit(d); err != nil {
		return 0, 0, fmt.Errorf("the file changed while it was imported: %w", err)
	}
	// The blob came from a verified root's listing, exactly as a download
	// does: mark it shareable with peers, in the proxy's own records
	// (proxy.Server.IsVerified reads this key).
	if err := proxy.MarkVerified(st, d); err != nil {
		return 0, 0, fmt.Errorf("marking %s verified: %w", d, err)
	}
	return importAdded, n, nil
}

// verifiedPackages reads, for every trusted root the cache holds, the
// Packages indexes it lists (each held blob whose SHA-256 the root gives)
// and returns every package digest found there with its URL and size. The
// root itself was verified by serve before it was stored; an untrusted root
// contributes nothing.
func verifiedPackages(st *store.Store) (map[store.Digest]debRef, error) {
	roots, err := st.Roots()
	if err != nil {
		return nil, fmt.Errorf("reading the repositories of the cache: %w", err)
	}
	out := map[store.Digest]debRef{}
	for _, r := range roots {
		if r.Untrusted {
			continue
		}
		rel, err := heldRelease(st, r)
		if err != nil {
			return nil, err
		}
		archive := r.Repo
		if i := strings.LastIndex(archive, "/dists/"); i >= 0 {
			archive = archive[:i]
		}
		parsed := map[string]bool{} // Packages files parsed, by name without compression
		for p, sum := range rel.Files {
			kind, ok := apt.IsIndexPath(p)
			plain := decompress.TrimExt(p)
			if !ok || kind != apt.IndexPackages || parsed[plain] || len(sum.SHA256) != 32 {
				continue
			}
			d := store.Digest(sum.SHA256)
			if !st.HasBlob(d) {
				continue
			}
			if err := readPackages(st, d, p, func(pk *apt.Package) {
				out[store.Digest(pk.SHA256)] = debRef{url: archive + "/" + pk.Filename, size: pk.Size}
			}); err != nil {
				return nil, fmt.Errorf("%s/%s: %w", r.Repo, p, err)
			}
			parsed[plain] = true
		}
	}
	return out, nil
}

// heldRelease parses the root of r as the cache holds it: the signed text
// of an InRelease, or a Release whose detached signature serve checked.
func heldRelease(st *store.Store, r store.RootRecord) (*apt.Release, error) {
	f, _, err := st.OpenBlob(r.Digest)
	if err != nil {
		return nil, fmt.Errorf("the root of %s (%s) is not in the cache: %w; run apt-get update through pkgswarm", r.Repo, r.URL, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<20))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the root of %s: %w", r.Repo, err)
	}
	rel, err := parseRootText(data)
	if err != nil {
		return nil, fmt.Errorf("the root of %s (%s): %w", r.Repo, r.URL, err)
	}
	return rel, nil
}

// parseRootText parses a Release, or the signed text of an InRelease,
// without checking the signature (its caller already did, or trusts the
// node that did).
func parseRootText(data []byte) (*apt.Release, error) {
	if block, _ := clearsign.Decode(data); block != nil {
		data = block.Plaintext
	}
	return apt.ParseRelease(data)
}

// readPackages calls fn for each package of the Packages index held as
// blob d (named name, whose extension gives the compression).
func readPackages(st *store.Store, d store.Digest, name string, fn func(*apt.Package)) error {
	f, _, err := st.OpenBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	rc, err := decompress.NewReader(path.Base(name), f)
	if err != nil {
		return err
	}
	defer rc.Close()
	return apt.ParsePackages(rc, func(p *apt.Package) error { fn(p); return nil })
}
