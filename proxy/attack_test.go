package proxy_test

// Regression tests for the attacks of issue 11: a hostile mirror, a hostile
// LAN peer and a hostile LAN client against the promise that nothing
// unverified is cached, shared or served as whole. docs/security.md lists
// each attack with the test that covers it.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/lan"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
)

func flip(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)/2] ^= 0x5a
	return b
}

// peerHas asks the node's peer endpoint whether it offers digest d.
func (r *rig) peerHas(d string) int {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodHead, r.URL+"/_pkgswarm/v1/blob/sha256/"+d, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Issue 11, item 1: an unsigned rpm-md repomd.xml placed under an apt
// archive, naming a .deb with another digest, must not replace what
// InRelease → Packages recorded for it, nor make the mirror's tampered
// .deb cached, shareable or served.
func TestUnsignedRepomdCannotOverrideAptDigest(t *testing.T) {
	// The archive lives under /debian, as on a real mirror, so that a
	// repodata/ directory fits next to its pool/.
	repo := testrepo.Build(t, testrepo.Options{Packages: defaultPackages[:2]})
	top := t.TempDir()
	if err := os.Symlink(repo.Dir, filepath.Join(top, "debian")); err != nil {
		t.Fatal(err)
	}
	origin := testrepo.Serve(t, top)
	r := &rig{t: t, repo: repo, origin: origin}
	r.start(rigOptions{})
	archive := origin.URL + "/debian"
	victim := repo.Debs["alpha"]
	good, err := os.ReadFile(repo.Path(victim.Path))
	if err != nil {
		t.Fatal(err)
	}
	bad := flip(good)
	badSum := sha256.Sum256(bad)
	repomd := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1</revision>
<data type="primary"><checksum type="sha256">%x</checksum><location href="%s"/><size>%d</size></data>
</repomd>
`, badSum, victim.Path, len(bad))
	if err := os.MkdirAll(repo.Path("repodata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(repo.Path("repodata/repomd.xml"), []byte(repomd), 0o644); err != nil {
		t.Fatal(err)
	}
	c := aptenvFor(t, r, archive)
	if out, err := c.Update(context.Background()); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	r.expects("debian/" + victim.Path)
	if resp, _, err := r.Get(archive+"/repodata/repomd.xml", nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("repomd.xml: %v %v", resp.Status, err)
	}
	origin.Tamper(victim.Path, func([]byte) []byte { return bad })
	resp, body, err := r.Get(archive+"/"+victim.Path, nil)
	if err == nil && resp.StatusCode == http.StatusOK && bytes.Equal(body, bad) {
		t.Fatal("the tampered .deb was served whole, vouched for by an unsigned repomd.xml")
	}
	if r.Store.HasBlob(store.Digest(badSum)) || r.Store.Shareable(store.Digest(badSum)) {
		t.Fatal("the tampered .deb is in the cache")
	}
	if code := r.peerHas(hex.EncodeToString(badSum[:])); code == http.StatusOK {
		t.Fatal("the tampered .deb is offered to peers")
	}
	origin.Untamper(victim.Path)
	resp, body, err = r.Get(archive+"/"+victim.Path, nil)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, good) {
		t.Fatalf("after the mirror was repaired: %v, %d bytes, good %v", err, len(body), bytes.Equal(body, good))
	}
}

// aptenvFor is an isolated apt-get using r in forward mode for the
// repository at archive.
func aptenvFor(t *testing.T, r *rig, archive string) *aptenv.Client {
	return aptenv.New(t, aptenv.Options{Proxy: r.URL, Sources: []aptenv.Source{{URL: archive, Keyring: r.repo.Key.KeyringPath, Suite: r.repo.Suite}}})
}

// Issue 11, item 2: a file that fails verification never reaches a client
// whole, however it is streamed: the last byte is held back until the
// digest matched, so a client that does not verify (curl) sees a failed
// transfer. The origin sends every byte of a tampered 6 MiB .deb (streamed
// at once) and of a small one (streamed after the hold time), then holds
// the end of the body back.
func TestStreamedTamperedFileNeverCompletes(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		testrepo.RequireTools(t, "curl")
	}
	pkgs := []testrepo.Package{{Name: "big", Version: "1", Size: 6 << 20, Seed: 21}, {Name: "small", Version: "1", Size: 21 << 10, Seed: 22}}
	r := newRig(t, rigOptions{packages: pkgs, cfg: func(c *node.Config) { c.Hold = 100 * time.Millisecond }})
	c := r.client(false)
	if out, err := c.Update(context.Background()); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	for _, name := range []string{"big", "small"} {
		d := r.repo.Debs[name]
		r.expects(d.Path)
		r.origin.SetFault(d.Path, testrepo.Fault{Tamper: flip, HoldEnd: 2 * time.Second})
		out := filepath.Join(t.TempDir(), name+".deb")
		cmd := exec.Command(curl, "--silent", "--show-error", "--max-time", "30", "-x", r.URL, "-o", out, r.origin.URL+"/"+d.Path)
		msg, err := cmd.CombinedOutput()
		got, _ := os.ReadFile(out)
		if err == nil {
			t.Errorf("%s: curl finished cleanly (%d bytes: %.200q) on a file that failed verification", name, len(got), got)
		}
		if int64(len(got)) >= d.Size {
			t.Errorf("%s: curl received all %d bytes of a file that failed verification (%s)", name, len(got), msg)
		}
		resp, err := r.ProxyClient().Get(r.origin.URL + "/" + d.Path)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK && int64(len(b)) == d.Size {
				t.Errorf("%s: a Go client read the whole tampered file with no error", name)
			}
		}
		r.origin.ClearFault(d.Path)
	}
}

// Issue 11, item 2, from a hostile LAN peer: the peer sends every byte of
// a tampered 6 MiB .deb (streamed at once) without a Content-Length and holds
// the end of its body; the client never gets the last byte, the peer is
// banned, and the next request gets the file from the origin. The peer
// answers for the .deb only, so that it is really the one serving it.
func TestStreamedTamperFromPeerNeverCompletes(t *testing.T) {
	a := newRig(t, rigOptions{packages: []testrepo.Package{{Name: "big", Version: "1", Size: 6 << 20, Seed: 23}}})
	big := a.repo.Debs["big"]
	good, _ := os.ReadFile(a.repo.Path(big.Path))
	// No Content-Length; the end of the body is held.
	debGets, b, peers := blobPeerRig(t, a, big.SHA256, -1, func(c *node.Config) { c.StallTimeout = time.Second },
		func(w http.ResponseWriter, r *http.Request) {
			w.Write(flip(good))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
	if r := peers.banned("evil"); r != "" {
		t.Fatalf("the peer was banned before the .deb was asked for: %q", r)
	}
	b.expects(big.Path)
	u := a.origin.URL + "/" + big.Path
	resp, err := b.ProxyClient().Get(u)
	if err == nil {
		got, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && bytes.Equal(got, flip(good)) {
			t.Fatal("a client read the peer's tampered file whole")
		}
	}
	if debGets.Load() == 0 {
		t.Fatal("the peer was never asked for the .deb: the test did not exercise a peer stream")
	}
	if !noderig.Eventually(func() bool { return peers.banned("evil") != "" }) {
		t.Fatal("the peer that sent tampered bytes was not banned")
	}
	if resp, body, err := b.Get(u, nil); err != nil || resp.StatusCode != 200 || !bytes.Equal(body, good) {
		t.Fatalf("the next request: %v, %d bytes, good %v", err, len(body), bytes.Equal(body, good))
	}
}

// blobPeerRig starts a hostile LAN peer, "evil", that claims to hold the blob
// sha256 whole (of size bytes in Content-Length, when not negative) and
// answers its GETs with body (everything else is 404), and
// a second node over a's repository whose LAN tier has that one peer (cfg
// adds to its configuration); the node's client has run apt-get update. It
// returns the count of the peer's blob GETs, the node and its peer list.
func blobPeerRig(t *testing.T, a *rig, sha256 string, size int, cfg func(*node.Config), body http.HandlerFunc) (*atomic.Int32, *rig, *staticPeers) {
	t.Helper()
	var gets atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/"+sha256) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Pkgswarm-State", "complete")
		if size >= 0 {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		if r.Method == http.MethodHead {
			return
		}
		gets.Add(1)
		body(w, r)
	}))
	t.Cleanup(evil.Close)
	peers := &staticPeers{peers: []lan.Peer{{ID: "evil", URL: evil.URL}}}
	b := &rig{t: t, repo: a.repo, origin: a.origin}
	b.start(rigOptions{cfg: func(c *node.Config) {
		cfg(c)
		c.Site = []fetch.Source{&lan.Source{NodeID: "b", Peers: peers}}
	}})
	if out, err := b.client(false).Update(context.Background()); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	return &gets, b, peers
}

// A small file whose peer turns out bad after the hold time reaches the
// client whole from the next tier: the bytes of a peer are not streamed
// before their verdict when the file is small enough to hold (4 MiB), so a
// hostile peer costs time, not the client's transfer. (The swarm lab's
// poisoned-metainfo case failed apt this way when the machine was slow.)
func TestSlowBadPeerDoesNotFailTheClient(t *testing.T) {
	a := newRig(t, rigOptions{packages: []testrepo.Package{{Name: "mid", Version: "1", Size: 1 << 20, Seed: 29}}})
	mid := a.repo.Debs["mid"]
	good, _ := os.ReadFile(a.repo.Path(mid.Path))
	debGets, b, peers := blobPeerRig(t, a, mid.SHA256, len(good), func(c *node.Config) { c.Hold = 100 * time.Millisecond },
		func(w http.ResponseWriter, r *http.Request) {
			bad := flip(good)
			w.Write(bad[:len(bad)/2])
			w.(http.Flusher).Flush()
			select { // past the hold time, then the rest
			case <-time.After(600 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			w.Write(bad[len(bad)/2:])
		})
	b.expects(mid.Path)
	resp, body, err := b.Get(a.origin.URL+"/"+mid.Path, nil)
	if debGets.Load() == 0 {
		t.Fatal("the peer was never asked for the file: the test did not exercise a peer")
	}
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, good) {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("after a slow bad peer the client got %d, %d bytes (good: %v), %v; want the origin's good copy", status, len(body), bytes.Equal(body, good), err)
	}
	if r := peers.banned("evil"); r == "" {
		t.Error("the peer that sent tampered bytes was not banned")
	}
}

// Issue 11, item 3: roots are bound to the suite their path names, to the
// clock, and to the keys that signed the repository's accepted roots; a
// refused root never freezes the repository.
func TestRootOfAnotherSuiteIsRefused(t *testing.T) {
	key := testrepo.NewKey(t, "archive")
	stable := testrepo.Build(t, testrepo.Options{Suite: "stable", Key: key, Packages: defaultPackages[:1]})
	testing_ := testrepo.Build(t, testrepo.Options{Suite: "testing", Key: key, Packages: defaultPackages[1:2],
		Date: time.Now().Add(2 * time.Minute)})
	origin := testrepo.Serve(t, stable.Dir)
	r := &rig{t: t, repo: stable, origin: origin}
	r.start(rigOptions{revalidate: time.Nanosecond})
	inrel := origin.URL + "/" + stable.DistPath("InRelease")
	theirs, err := os.ReadFile(testing_.Path(testing_.DistPath("InRelease")))
	if err != nil {
		t.Fatal(err)
	}
	// First contact: another suite's root is refused outright...
	origin.Tamper(stable.DistPath("InRelease"), func([]byte) []byte { return theirs })
	if resp, _, _ := r.Get(inrel, nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("testing's root served as stable's, first contact: %d, want 502", resp.StatusCode)
	}
	// ...and does not stop the genuine root (item 5: asked again at once).
	origin.Untamper(stable.DistPath("InRelease"))
	_, mine, err := r.Get(inrel, nil)
	if err != nil || !bytes.Contains(mine, []byte("Suite: stable")) {
		t.Fatalf("the genuine root after a refused one: %v %q", err, firstLine(mine))
	}
	// Held root: the other suite's newer root is refused, the held one served.
	origin.Tamper(stable.DistPath("InRelease"), func([]byte) []byte { return theirs })
	_, got, _ := r.Get(inrel, nil)
	if !bytes.Equal(got, mine) {
		t.Fatalf("served %q after another suite's root, want the held stable root", firstLine(got))
	}
	r.install(r.client(false))
}

func firstLine(b []byte) string { l, _, _ := bytes.Cut(b, []byte("\n")); return string(l) }

func TestRootFromTheFutureIsRefused(t *testing.T) {
	r := newRig(t, rigOptions{packages: defaultPackages[:1], revalidate: time.Nanosecond})
	inrel := r.origin.URL + "/" + r.repo.DistPath("InRelease")
	_, held, err := r.Get(inrel, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The repository's own key signs a root dated 2036.
	future := testrepo.Build(t, testrepo.Options{Key: r.repo.Key, Packages: defaultPackages[:1], Date: time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC)})
	theirs, _ := os.ReadFile(future.Path(future.DistPath("InRelease")))
	r.origin.Tamper(r.repo.DistPath("InRelease"), func([]byte) []byte { return theirs })
	if _, got, _ := r.Get(inrel, nil); !bytes.Equal(got, held) {
		t.Fatal("a root dated 2036 was accepted")
	}
	// The genuine next root (dated now) is still accepted: no freeze.
	r.origin.Untamper(r.repo.DistPath("InRelease"))
	if err := r.repo.Resign(); err != nil {
		t.Fatal(err)
	}
	now, _ := os.ReadFile(r.repo.Path(r.repo.DistPath("InRelease")))
	if _, got, _ := r.Get(inrel, nil); !bytes.Equal(got, now) {
		t.Fatal("the genuine root after a refused future one was not accepted: the repository is frozen")
	}
	r.install(r.client(false))
}

func TestRootBoundToItsKeys(t *testing.T) {
	keyA, keyB := testrepo.NewKey(t, "a"), testrepo.NewKey(t, "b")
	repo := testrepo.Build(t, testrepo.Options{Key: keyA, Packages: defaultPackages[:1]})
	origin := testrepo.Serve(t, repo.Dir)
	kr, err := apt.LoadKeyring(keyA.KeyringPath, keyB.KeyringPath)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, repo: repo, origin: origin}
	r.start(rigOptions{revalidate: time.Nanosecond, cfg: func(c *node.Config) { c.AptKeyring = kr }})
	inrel := origin.URL + "/" + repo.DistPath("InRelease")
	_, held, err := r.Get(inrel, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Key B (trusted, for another repository) signs a newer root of A's.
	if err := repo.Resign(testrepo.WithKey(keyB)); err != nil {
		t.Fatal(err)
	}
	resp, got, _ := r.Get(inrel, nil)
	if !bytes.Equal(got, held) {
		t.Fatalf("a root signed by another trusted key was accepted for this repository (%d)", resp.StatusCode)
	}
	if st := r.State(); len(st.Repos) != 1 || len(st.Repos[0].Keys) != 1 {
		t.Fatalf("status repositories %+v, want one bound to one key", st.Repos)
	}
	// The repository's own key signs again: accepted.
	if err := repo.Resign(testrepo.WithKey(keyA)); err != nil {
		t.Fatal(err)
	}
	mine, _ := os.ReadFile(repo.Path(repo.DistPath("InRelease")))
	if _, got, _ := r.Get(inrel, nil); !bytes.Equal(got, mine) {
		t.Fatal("the repository's own key's next root was not accepted")
	}
}

// Issue 11, item 4: a .deb asked for before any parsed index lists it (here:
// the root is accepted, the Packages index never fetched) is streamed, not
// cached by URL: once the mirror is repaired, the next client gets the good
// file, not the tampered one from the cache.
func TestDebBeforeIndexIsNotCachedByURL(t *testing.T) {
	r := newRig(t, rigOptions{packages: defaultPackages[:2]})
	if resp, _, err := r.Get(r.origin.URL+"/"+r.repo.DistPath("InRelease"), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("InRelease: %v %v", resp, err)
	}
	victim := r.repo.Debs["alpha"]
	good, _ := os.ReadFile(r.repo.Path(victim.Path))
	r.origin.Tamper(victim.Path, flip)
	if _, body, err := r.Get(r.origin.URL+"/"+victim.Path, nil); err != nil || bytes.Equal(body, good) {
		t.Fatalf("tampered origin: %v", err)
	}
	if !noderig.Eventually(func() bool { return len(r.Fetch.Transfers()) == 0 }) {
		t.Fatal("the download did not end")
	}
	if r.Store.HasBlob(store.DigestOf(flip(good))) {
		// Held as a blob is harmless only if nothing maps a URL to it.
		if e, err := r.Store.GetURL(r.origin.URL + "/" + victim.Path); err == nil && e.Digest == store.DigestOf(flip(good)) {
			t.Fatal("the tampered .deb is cached by URL")
		}
	}
	r.origin.Untamper(victim.Path)
	if _, body, err := r.Get(r.origin.URL+"/"+victim.Path, nil); err != nil || !bytes.Equal(body, good) {
		t.Fatalf("after the mirror was repaired the client got %d bytes, good %v (%v)", len(body), bytes.Equal(body, good), err)
	}
}

// Issue 11, item 5: after a refused first root the next request asks the
// origin again (within the revalidation window).
func TestRefusedFirstRootIsAskedAgain(t *testing.T) {
	r := newRig(t, rigOptions{packages: defaultPackages[:1], revalidate: time.Hour})
	inrel := r.origin.URL + "/" + r.repo.DistPath("InRelease")
	r.origin.Tamper(r.repo.DistPath("InRelease"), func(b []byte) []byte {
		return bytes.Replace(b, []byte("Suite: "), []byte("Suite:  "), 1)
	})
	if resp, _, _ := r.Get(inrel, nil); resp.StatusCode == http.StatusOK {
		t.Fatal("a root with a bad signature was served")
	}
	r.origin.Untamper(r.repo.DistPath("InRelease"))
	if resp, _, _ := r.Get(inrel, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the origin was fixed: %d, want 200 at once", resp.StatusCode)
	}
}

// Issue 11, item 9: a file no root lists is bounded in size and idle time.
func TestUnlistedFileIsBounded(t *testing.T) {
	r := newRig(t, rigOptions{packages: defaultPackages[:1], cfg: func(c *node.Config) {
		c.MaxUnverified = 1 << 20
		c.StallTimeout = 300 * time.Millisecond
	}})
	big := bytes.Repeat([]byte("x"), 3<<20)
	sum := sha256.Sum256(big)
	p := "dists/stable/main/binary-amd64/by-hash/SHA256/" + hex.EncodeToString(sum[:])
	if err := os.MkdirAll(filepath.Dir(r.repo.Path(p)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.repo.Path(p), big, 0o644); err != nil {
		t.Fatal(err)
	}
	resp, _, _ := r.Get(r.origin.URL+"/"+p, nil)
	if resp.StatusCode == http.StatusOK || r.Store.HasBlob(store.Digest(sum)) {
		t.Fatalf("a 3 MiB file no root lists, bound 1 MiB: %d, cached %v", resp.StatusCode, r.Store.HasBlob(store.Digest(sum)))
	}
	// Idle: under the size bound, every byte sent, then the end of the
	// body held back 5 s; the 300 ms stall bound must cut it.
	small := bytes.Repeat([]byte("y"), 100<<10)
	ssum := sha256.Sum256(small)
	p2 := "dists/stable/main/binary-amd64/by-hash/SHA256/" + hex.EncodeToString(ssum[:])
	if err := os.WriteFile(r.repo.Path(p2), small, 0o644); err != nil {
		t.Fatal(err)
	}
	r.origin.SetFault(p2, testrepo.Fault{HoldEnd: 5 * time.Second})
	start := time.Now()
	resp, body, err := r.Get(r.origin.URL+"/"+p2, nil)
	if err == nil && resp.StatusCode == http.StatusOK && bytes.Equal(body, small) {
		t.Fatalf("an unlisted file from an origin idle for 5 s at its end was served whole after %v", time.Since(start).Round(time.Millisecond))
	}
	if r.Store.HasBlob(store.Digest(ssum)) {
		t.Fatal("the file from the stalled origin is cached")
	}
}

// Issue 11, item 11: hostile LAN peers. One trickles bytes (cut for its
// rate, banned), one says "starting" and never serves (banned after the
// wait), one changes its node id on every lookup (banned by address).
func TestHostilePeersAreBanned(t *testing.T) {
	a := newRig(t, rigOptions{packages: []testrepo.Package{{Name: "pkg", Version: "1", Size: 2 << 20, Seed: 31}}})
	d := a.repo.Debs["pkg"]
	good, _ := os.ReadFile(a.repo.Path(d.Path))
	t.Run("trickle", func(t *testing.T) {
		trickle := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, d.SHA256) {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("X-Pkgswarm-State", "complete")
			if r.Method == http.MethodHead {
				return
			}
			for i := 0; i < len(good); i += 2 {
				if _, err := w.Write(good[i : i+2]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}))
		t.Cleanup(trickle.Close)
		peers := &staticPeers{peers: []lan.Peer{{ID: "slow", URL: trickle.URL}}}
		b := &rig{t: t, repo: a.repo, origin: a.origin}
		b.start(rigOptions{cfg: func(c *node.Config) {
			c.MinRate, c.RateWindow = 64<<10, 300*time.Millisecond
			c.Site = []fetch.Source{&lan.Source{NodeID: "b", Peers: peers}}
		}})
		b.install(b.client(false))
		if reason := peers.banned("slow"); !strings.Contains(reason, fetch.ErrTooSlow.Error()) {
			t.Fatalf("trickling peer: ban reason %q, want one saying it was too slow", reason)
		}
	})
	t.Run("starting forever", func(t *testing.T) {
		liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Pkgswarm-State", "starting")
		}))
		t.Cleanup(liar.Close)
		peers := &staticPeers{peers: []lan.Peer{{ID: "liar", URL: liar.URL}}}
		b := &rig{t: t, repo: a.repo, origin: a.origin}
		b.start(rigOptions{cfg: func(c *node.Config) {
			c.Site = []fetch.Source{&lan.Source{NodeID: "b", Peers: peers, Wait: 500 * time.Millisecond}}
		}})
		b.install(b.client(false))
		if peers.banned("liar") == "" {
			t.Fatal("a peer that said it was fetching and never served was not banned")
		}
	})
	t.Run("new id each lookup", func(t *testing.T) {
		two := newRig(t, rigOptions{packages: []testrepo.Package{{Name: "one", Version: "1", Size: 40 << 10, Seed: 32}, {Name: "two", Version: "1", Size: 40 << 10, Seed: 33}}})
		var gets atomic.Int32
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Pkgswarm-State", "complete")
			if r.Method == http.MethodHead {
				return
			}
			gets.Add(1)
			w.Write(bytes.Repeat([]byte("lie"), 1000))
		}))
		t.Cleanup(evil.Close)
		b := &rig{t: t, repo: two.repo, origin: two.origin}
		b.start(rigOptions{cfg: func(c *node.Config) {
			c.Site = []fetch.Source{&lan.Source{NodeID: "b", Peers: &shiftyPeers{url: evil.URL}}}
		}})
		b.install(b.client(false))
		if n := gets.Load(); n != 1 {
			t.Fatalf("a peer that changes its id was asked for %d files, want 1 (banned by address after the first lie)", n)
		}
	})
}

// shiftyPeers is a PeerSet whose only peer has a new id at every lookup.
type shiftyPeers struct {
	url string
	mu  sync.Mutex
	n   int
}

func (s *shiftyPeers) Peers() []lan.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return []lan.Peer{{ID: fmt.Sprintf("evil-%d", s.n), URL: s.url}}
}

func (s *shiftyPeers) Ban(string, time.Time, string) {}

// Issue 11, item 12: with default settings a LAN client cannot read a
// service listening only on a loopback address through pkgswarm, whatever
// repository-shaped path or address form it uses.
func TestLoopbackServiceIsNotAnOrigin(t *testing.T) {
	var hits atomic.Int32
	svc := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, "secret")
	}))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	svc.Listener = ln
	svc.Start()
	t.Cleanup(svc.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	n := noderig.Start(t, noderig.Options{Strict: true, OriginURLs: []string{svc.URL}})
	hex64 := strings.Repeat("ab", 32)
	for _, u := range []string{
		"http://127.0.0.2:" + port + "/x/dists/s/main/by-hash/SHA256/" + hex64,
		"http://127.0.0.2:" + port + "/m/media/core/media_info/synthesis.hdlist.cz",
		"http://127.0.0.2:" + port + "/r/repodata/repomd.xml",
		"http://127.0.0.2:" + port + "/pool/x.deb",
		"http://[::ffff:127.0.0.2]:" + port + "/pool/x.deb",
		"http://127.0.0.2:0" + port + "/pool/x.deb",
	} {
		resp, body, err := n.Get(u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "secret") {
			t.Errorf("%s: %d %q, want 403", u, resp.StatusCode, body)
		}
	}
	if h := hits.Load(); h != 0 {
		t.Fatalf("the loopback service was reached %d times", h)
	}
}

// Issue 11, item 13: a full disk is answered 507 with the reason, not 504.
func TestDiskFullIs507(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (a tmpfs for the store) and CI runs as root")
		}
		t.Skip("needs root to mount a small tmpfs for the store")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	// 3.5 MiB: under the size streamed at once, so the client waits for the
	// download and hears its outcome as a status.
	r := newRig(t, rigOptions{dir: dir, packages: []testrepo.Package{{Name: "big", Version: "1", Size: 3<<20 + 512<<10, Seed: 41}}})
	c := r.client(false)
	if out, err := c.Update(context.Background()); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	r.expects(r.repo.Debs["big"].Path)
	resp, body, err := r.Get(r.origin.URL+"/"+r.repo.Debs["big"].Path, nil)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(body), "no space") {
		t.Fatalf("disk full: %d %.300q, want 507 saying so", resp.StatusCode, body)
	}
}

// A client whose apt lists are current asks for a .deb without the node
// ever having seen the Packages index listing it: the node fetches that
// index itself (the one its accepted root lists), so the file is verified,
// kept and shareable — a tampered copy is refused — instead of streamed
// unverified on every request.
func TestDebWithoutIndexIsVerifiedThroughTheRootsIndex(t *testing.T) {
	r := newRig(t, rigOptions{packages: defaultPackages[:2]})
	if resp, _, err := r.Get(r.origin.URL+"/"+r.repo.DistPath("InRelease"), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("InRelease: %v %v", resp, err)
	}
	victim := r.repo.Debs["alpha"]
	r.origin.Tamper(victim.Path, flip)
	if resp, _, _ := r.Get(r.origin.URL+"/"+victim.Path, nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("a tampered .deb whose index the client never fetched through the node: %d, want 502 (verified against the root's index)", resp.StatusCode)
	}
	r.origin.Untamper(victim.Path)
	good, _ := os.ReadFile(r.repo.Path(victim.Path))
	for range 2 {
		if resp, body, err := r.Get(r.origin.URL+"/"+victim.Path, nil); err != nil || resp.StatusCode != 200 || !bytes.Equal(body, good) {
			t.Fatalf("after the repair: %v %d", err, resp.StatusCode)
		}
	}
	if n := r.origin.Requests(victim.Path); n != 2 {
		t.Fatalf("origin served %s %d times (the tampered try and one good copy), want 2: the second request must be a hit", victim.Path, n)
	}
	if !noderig.Eventually(func() bool { return r.Store.Shareable(store.DigestOf(good)) }) {
		t.Fatal("the verified .deb is not offered to peers")
	}
}
