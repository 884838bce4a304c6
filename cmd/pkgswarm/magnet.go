package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

func magnetCommand() *cli.Command {
	return &cli.Command{
		Name:      "magnet",
		Usage:     "print the BitTorrent magnet link of a cached file (with x.pe peer hints)",
		ArgsUsage: "SHA256 | FILE | URL",
		Description: "The argument is a file's SHA-256, a local file (e.g. /var/cache/apt/archives/x.deb, hashed here),\n" +
			"or the origin URL of a file the proxy has cached. The running pkgswarm (--server) must hold\n" +
			"the file verified; it seeds it and answers with the magnet link any BitTorrent client can use.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "server", EnvVars: env("server"), Value: "http://127.0.0.1:3142", Usage: "the pkgswarm node to ask"},
			&cli.BoolFlag{Name: "json", Usage: "print sha256, size and magnet as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("magnet: give one SHA256, FILE or URL (see pkgswarm magnet --help)", 2)
			}
			server := strings.TrimRight(c.String("server"), "/")
			d, err := resolveDigest(server, c.Args().First())
			if err != nil {
				return cli.Exit("magnet: "+err.Error(), 1)
			}
			resp, err := httpClient().Get(server + "/_pkgswarm/v1/magnet/sha256/" + d)
			if err != nil {
				return cli.Exit(fmt.Sprintf("magnet: asking %s: %v (is pkgswarm serve running there? set --server)", server, err), 1)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if resp.StatusCode != http.StatusOK {
				return cli.Exit(fmt.Sprintf("magnet: %s: %s", server, strings.TrimSpace(string(body))), 1)
			}
			var m struct {
				SHA256 string `json:"sha256"`
				Size   int64  `json:"size"`
				Magnet string `json:"magnet"`
			}
			if err := json.Unmarshal(body, &m); err != nil {
				return cli.Exit("magnet: bad answer from "+server+": "+err.Error(), 1)
			}
			if name := displayName(c.Args().First()); name != "" {
				m.Magnet = withDisplayName(m.Magnet, name)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetEscapeHTML(false) // the magnet's & stays &, as a script copies it
				return enc.Encode(m)
			}
			fmt.Fprintln(c.App.Writer, m.Magnet)
			return nil
		},
	}
}

// httpClient talks to a pkgswarm node directly, never through a proxy from
// the environment (which often points at the node itself).
func httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Minute}
}

// resolveDigest turns a SHA-256, a local file or an origin URL into a hex
// digest. For a URL it asks the node (HEAD through it as a proxy): the ETag
// of a cached verified file names its digest.
func resolveDigest(server, arg string) (string, error) {
	if a := strings.ToLower(arg); hexDigest.MatchString(a) {
		return a, nil
	}
	if strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
		pu, err := url.Parse(server)
		if err != nil {
			return "", err
		}
		cl := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: time.Minute}
		resp, err := cl.Head(arg)
		if err != nil {
			return "", fmt.Errorf("looking up %s through %s: %w", arg, server, err)
		}
		resp.Body.Close()
		tag := strings.Trim(resp.Header.Get("ETag"), `"`)
		if d, ok := strings.CutPrefix(tag, "sha256-"); ok && hexDigest.MatchString(d) {
			return d, nil
		}
		return "", fmt.Errorf("%s is not cached by %s (%s); fetch it through the proxy first", arg, server, resp.Status)
	}
	f, err := os.Open(arg)
	if err != nil {
		return "", fmt.Errorf("%v: give a SHA-256, an existing file, or an http(s) URL", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return "", fmt.Errorf("hashing %s: %w", arg, err)
	} else if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file (%s): give a SHA-256, a package file, or an http(s) URL", arg, fi.Mode().Type())
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", arg, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// displayName is the file name a user named the file by (a local file or
// a URL), for the magnet's dn=; "" for a bare digest.
func displayName(arg string) string {
	if hexDigest.MatchString(strings.ToLower(arg)) {
		return ""
	}
	if u, err := url.Parse(arg); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		arg = u.Path
	}
	name := filepath.Base(arg)
	if name == "." || name == "/" || name == "" {
		return ""
	}
	if un, err := url.PathUnescape(name); err == nil {
		name = un
	}
	return name
}

// withDisplayName sets the dn= (display name, BEP 9) of magnet m to name;
// the torrent itself keeps its canonical name (the digest), so every
// holder still joins the one swarm.
func withDisplayName(m, name string) string {
	base, query, ok := strings.Cut(m, "?")
	if !ok {
		return m
	}
	var parts []string
	set := false
	for _, p := range strings.Split(query, "&") {
		if strings.HasPrefix(p, "dn=") {
			p, set = "dn="+url.QueryEscape(name), true
		}
		parts = append(parts, p)
	}
	if !set {
		parts = append(parts, "dn="+url.QueryEscape(name))
	}
	return base + "?" + strings.Join(parts, "&")
}
