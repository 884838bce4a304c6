package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// testOwner is the throwaway user that owns the data directory in these
// tests, as the packaged unit's DynamicUser does: a bare uid and gid with no
// passwd entry.
const testOwner = 4242

// chownTree gives every file under dir to uid:gid.
func chownTree(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// notOwnedBy lists the files under dir whose owner or group is not uid:gid.
func notOwnedBy(t *testing.T, dir string, uid, gid uint32) []string {
	t.Helper()
	var bad []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked
		}
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid {
			bad = append(bad, fmt.Sprintf("%s (%d:%d)", strings.TrimPrefix(p, dir+"/"), st.Uid, st.Gid))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(to, fi.Mode().Perm())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRootCommandsKeepTheDataDirOwner is issue 10 item 3: import, verify, gc
// and serve run as root against a data directory that belongs to another
// user (the service's) leave every file there to that user, and a serve run
// as that user afterwards opens the cache with its URL and root records.
// "private" puts the directory where systemd puts a DynamicUser's cache:
// below a directory only root may enter, reached through a symlink.
func TestRootCommandsKeepTheDataDirOwner(t *testing.T) {
	needRoot(t, "it gives a data directory to a throwaway uid and runs pkgswarm as root and as that uid")
	needTools(t, "apt-get", "gpg", "gpgconf", "dpkg-deb")
	n := newOpNode(t, nil)
	n.aptDownload(t, n.aptClient(t), "alpha") // roots, Packages and one .deb
	n.Stop()

	world := worldDir(t)
	exe := userBinary(t, world)
	archives := filepath.Join(world, "archives")
	os.Mkdir(archives, 0o755)
	for _, name := range []string{"bravo", "charlie"} {
		copyFile(t, filepath.Join(n.repo.Dir, n.repo.Debs[name].Path), filepath.Join(archives, n.repo.Debs[name].FileName()))
	}
	owner := &syscall.Credential{Uid: testOwner, Gid: testOwner, Groups: []uint32{}}

	for _, tc := range []struct {
		name string
		args []string // nil: serve
		want string   // in its output
	}{
		{"import", []string{"import", archives}, "imported 2 files"},
		{"verify", []string{"verify"}, ": every file matches its digest"},
		{"gc", []string{"gc", "--size", "64K"}, "freed"},
		{"serve", nil, ""},
	} {
		for _, private := range []bool{false, true} {
			name := tc.name
			if private {
				name += "/private"
			}
			t.Run(name, func(t *testing.T) {
				base := filepath.Join(world, strings.ReplaceAll(name, "/", "-"))
				os.Mkdir(base, 0o755)
				data := filepath.Join(base, "pkgswarm")
				dirArg := data
				if private {
					os.Mkdir(filepath.Join(base, "private"), 0o700)
					data = filepath.Join(base, "private", "pkgswarm")
					if err := os.Symlink("private/pkgswarm", dirArg); err != nil {
						t.Fatal(err)
					}
				}
				copyTree(t, n.dir, data)
				chownTree(t, data, testOwner, testOwner)

				var logs string
				if tc.args == nil {
					s := startServe(t, runOpts{}, "--data-dir", dirArg)
					if err := s.stop(); err != nil {
						t.Fatalf("serve as root: %v\n%s", err, s.log())
					}
					logs = s.log()
				} else {
					out, errOut, code := runPkgswarm(t, runOpts{}, append(tc.args, "--data-dir", dirArg)...)
					if code != 0 || !strings.Contains(out, tc.want) {
						t.Fatalf("pkgswarm %s as root: exit %d, want 0 and %q in its output\nstdout:\n%s\nstderr:\n%s", tc.name, code, tc.want, out, errOut)
					}
					logs = errOut
				}
				if want := fmt.Sprintf("uid=%d gid=%d", testOwner, testOwner); !strings.Contains(logs, want) {
					t.Errorf("pkgswarm %s as root does not say it runs as the owner (%s):\n%s", tc.name, want, logs)
				}
				if bad := notOwnedBy(t, data, testOwner, testOwner); len(bad) > 0 {
					t.Errorf("after pkgswarm %s as root, files under the data directory are not the owner's (%d:%d): %s",
						tc.name, testOwner, testOwner, strings.Join(bad, ", "))
				}

				// The service: it reaches its directory (the unit's namespace
				// opens systemd's private directory to it) as the owner.
				os.Chmod(filepath.Join(base, "private"), 0o755)
				s := startServe(t, runOpts{exe: exe, cred: owner}, "--data-dir", data)
				st := s.status(t)
				if err := s.stop(); err != nil {
					t.Fatalf("serve as uid %d: %v\n%s", testOwner, err, s.log())
				}
				if len(st.Repos) != 1 || st.Store.Blobs == 0 {
					t.Fatalf("serve as uid %d after %s: %d repositories, %d blobs; want the repository's root record and its files kept",
						testOwner, tc.name, len(st.Repos), st.Store.Blobs)
				}
				if bad := notOwnedBy(t, data, testOwner, testOwner); len(bad) > 0 {
					t.Errorf("after serve as uid %d, files are not its own: %s", testOwner, strings.Join(bad, ", "))
				}
			})
		}
	}
}

// TestPermissionErrorSaysWhatToFix: a cache whose directory belongs to the
// service user but whose files root left behind (what an older pkgswarm run
// as root did; systemd re-owns a DynamicUser's directory only when the
// directory's own owner is wrong) makes serve and verify say which file
// belongs to whom, who runs, and the chown that fixes it — never to move
// index/ aside, which loses every URL and root record. Another user is told
// to run as root or as the owner.
func TestPermissionErrorSaysWhatToFix(t *testing.T) {
	needRoot(t, "it gives a data directory to a throwaway uid and runs pkgswarm as that uid")
	world := worldDir(t)
	exe := userBinary(t, world)
	// cache: root left every file, the directory is the owner's.
	// index: root left the index's value logs (badger's own errors).
	newCache := func(name string) string {
		dir := filepath.Join(world, name)
		st, err := store.Open(store.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutMeta("node-id", []byte("0123456789abcdef0123")); err != nil {
			t.Fatal(err)
		}
		st.Close()
		return dir
	}
	cache, index := newCache("cache"), newCache("index")
	if err := os.Chown(cache, testOwner, testOwner); err != nil {
		t.Fatal(err)
	}
	chownTree(t, index, testOwner, testOwner)
	vlogs, _ := filepath.Glob(filepath.Join(index, "index", "*.vlog"))
	if len(vlogs) == 0 {
		t.Fatalf("no value log in %s/index", index)
	}
	for _, f := range vlogs {
		os.Chown(f, 0, 0)
	}
	orig := snapshot(t, cache, index)
	owner := &syscall.Credential{Uid: testOwner, Gid: testOwner, Groups: []uint32{}}
	other := &syscall.Credential{Uid: testOwner + 1, Gid: testOwner + 1, Groups: []uint32{}}
	fix := func(dir string) string { return fmt.Sprintf("chown -R %d:%d %s", testOwner, testOwner, dir) }
	runsAs := fmt.Sprintf("pkgswarm runs as uid %d", testOwner)
	serve := []string{"serve", "--listen", "127.0.0.1:0", "--mdns=false", "--swarm", "off", "--system-keyrings=false"}

	for _, tc := range []struct {
		name string
		o    runOpts
		data string
		args []string
		want []string
	}{
		{"serve as the owner", runOpts{exe: exe, cred: owner}, cache, serve,
			[]string{cache + "/lock: permission denied (that file belongs to uid 0 (root))", runsAs, fix(cache)}},
		{"serve as the owner, index files", runOpts{exe: exe, cred: owner}, index, serve,
			[]string{vlogs[0] + ": permission denied (that file belongs to uid 0 (root))", runsAs, fix(index)}},
		{"verify as the owner", runOpts{exe: exe, cred: owner}, cache, []string{"verify"},
			[]string{"belongs to uid 0 (root)", runsAs, fix(cache)}},
		{"verify as root", runOpts{}, index, []string{"verify"},
			[]string{vlogs[0] + ": permission denied (that file belongs to uid 0 (root))", runsAs, fix(index)}},
		{"verify as another user", runOpts{exe: exe, cred: other}, cache, []string{"verify"},
			[]string{fmt.Sprintf("pkgswarm runs as uid %d, and the data directory belongs to uid %d", testOwner+1, testOwner),
				"run this command as root", fmt.Sprintf("sudo -u '#%d' pkgswarm", testOwner)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			before := snapshot(t, data)
			_, errOut, code := runPkgswarm(t, tc.o, append(tc.args, "--data-dir", data)...)
			if code == 0 {
				t.Fatalf("pkgswarm %s succeeded on a cache it cannot write:\n%s", tc.name, errOut)
			}
			t.Logf("pkgswarm %s:\n%s", tc.name, errOut)
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("pkgswarm %s: the error does not say %q:\n%s", tc.name, w, errOut)
				}
			}
			if strings.Contains(errOut, "aside") {
				t.Errorf("pkgswarm %s: a permission error suggests moving files aside:\n%s", tc.name, errOut)
			}
			// badger may have begun to open the index (a new memtable file,
			// the MANIFEST rewritten), but nothing is lost and nothing new
			// is anyone's but the owner's.
			after := snapshot(t, data)
			for p := range orig {
				if _, ok := after[p]; !ok && strings.HasPrefix(p, data+"/") {
					t.Errorf("pkgswarm %s removed %s from the cache it failed to open", tc.name, p)
				}
			}
			for p, f := range after {
				if _, ok := before[p]; !ok && (f.uid != testOwner || f.gid != testOwner) {
					t.Errorf("pkgswarm %s created %s as %d:%d", tc.name, p, f.uid, f.gid)
				}
			}
		})
	}
}
