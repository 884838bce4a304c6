package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// Who owns the files of the data directory.
//
// The data directory belongs to the user serve runs as: the packaged unit's
// DynamicUser (a uid systemd picks, with no passwd entry), or whoever ran
// serve first. import, verify and gc are run by hand, often with sudo. A
// file one of them created as root (a badger table or value log, tmp/, a
// blob's directory) cannot be opened by the next serve, and systemd does not
// repair it: it re-owns a DynamicUser's directory only when the directory's
// own owner is wrong.
//
// So every command that opens the store, started as root, runs as the owner
// of the data directory: it takes that user's uid and gid (for every thread:
// Go 1.16+ on Linux) before the store is opened, and says so on one line.
// Refusing and printing a `sudo -u '#UID' pkgswarm …` line instead would not
// work for the packaged unit: systemd keeps a DynamicUser's cache under
// /var/cache/private, which only root may enter on the host (the unit gets
// it through its own mount namespace), so that user cannot reach its own
// directory from a shell. Root can: it opens the directory first, then gives
// up its identity.

// runAsDataDirOwner switches the process to the owner of dir (its uid, the
// directory's gid, and the user's groups when it has a passwd entry) when
// it runs as root and dir exists and belongs to another user. It returns the path
// to reach dir by from then on: dir made absolute, or /proc/self/cwd when
// the owner cannot enter a directory above dir (the process then works in
// dir, and badger wants an absolute path).
// Without root, or when root owns dir, nothing changes.
func runAsDataDirOwner(dir string, log *slog.Logger) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("data directory %s: %w", dir, err)
	}
	if os.Geteuid() != 0 {
		return abs, nil
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return abs, nil // created by this run, as its user
	}
	if err != nil {
		return "", fmt.Errorf("data directory %s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return abs, nil
	}
	uid, gid := int(st.Uid), int(st.Gid)
	d, err := os.Open(abs)
	if err != nil {
		return "", fmt.Errorf("data directory %s: %w", dir, err)
	}
	defer d.Close()
	groups := []int{gid}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if g, err := strconv.Atoi(id); err == nil && g != gid {
					groups = append(groups, g)
				}
			}
		}
	}
	if err := setIDs(uid, gid, groups); err != nil {
		return "", fmt.Errorf("%s belongs to uid %d; pkgswarm runs as root and could not become that user (%w), "+
			"so it would leave files that user cannot open: run this command as uid %d instead", dir, uid, err, uid)
	}
	attrs := []any{"dir", dir, "uid", uid, "gid", gid}
	use := abs
	if _, err := os.Stat(abs); err != nil {
		// systemd's /var/cache/private: work inside the directory opened
		// while still root.
		if err := d.Chdir(); err != nil {
			return "", fmt.Errorf("data directory %s: entering it as uid %d: %w", dir, uid, err)
		}
		use = "/proc/self/cwd"
		attrs = append(attrs, "reached_as", use+" (uid "+strconv.Itoa(uid)+" may not enter a directory above it)")
	}
	log.Info("running as the owner of the data directory, so that every file created there stays its own", attrs...)
	return use, nil
}

// setIDs makes every thread of the process run as uid and gid with the
// supplementary groups given, for good (real, effective and saved ids).
func setIDs(uid, gid int, groups []int) error {
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	if os.Geteuid() != uid || os.Getegid() != gid {
		return fmt.Errorf("still uid %d gid %d after setuid", os.Geteuid(), os.Getegid())
	}
	return nil
}

// permissionHint explains a permission error met while opening the store in
// dir (as the process reaches it; shown is dir as the user named it): which
// file, who owns it, who pkgswarm runs as, and the command that fixes it. ok
// is false when err is not a permission error. badger flattens the errors it
// wraps into text, so a permission error is also recognised by the text Go
// gives one ("open PATH: permission denied"), and the files not owned by the
// running user are looked for under dir.
func permissionHint(dir, shown string, err error) (hint error, ok bool) {
	var pe *fs.PathError
	if !errors.As(err, &pe) || !errors.Is(pe.Err, fs.ErrPermission) {
		pe = nil
		m := deniedRE.FindAllStringSubmatch(err.Error(), -1)
		if m == nil {
			if !errors.Is(err, fs.ErrPermission) {
				return nil, false
			}
		} else {
			last := m[len(m)-1]
			pe = &fs.PathError{Op: last[1], Path: last[2], Err: syscall.EACCES}
		}
	}
	// Names as the user gave the directory, not as the process reaches it.
	display := func(p string) string {
		if rel, err := filepath.Rel(dir, p); err == nil && filepath.IsLocal(rel) {
			return filepath.Join(shown, rel)
		}
		return p
	}
	me, myGroup := os.Geteuid(), os.Getegid()
	dirUID, dirGID, _ := ownerOf(dir)
	var what string
	if pe != nil {
		what = (&fs.PathError{Op: pe.Op, Path: display(pe.Path), Err: pe.Err}).Error()
		if fi, err := os.Lstat(pe.Path); err == nil && int(fi.Sys().(*syscall.Stat_t).Uid) != me {
			what += fmt.Sprintf(" (that file belongs to %s)", userName(int(fi.Sys().(*syscall.Stat_t).Uid)))
		}
	} else {
		what = "permission denied"
	}
	if me != 0 && me == dirUID {
		if first, uid, n := foreignFile(dir, me); n > 0 {
			others := ""
			if n > 1 {
				others = fmt.Sprintf(" and %d more", n-1)
			}
			what += fmt.Sprintf("; files there not owned by %s: %s (%s)%s", userName(me), display(first), userName(uid), others)
		}
	}
	msg := fmt.Sprintf("opening the cache in %s: %s; pkgswarm runs as %s, and the data directory belongs to %s",
		shown, what, userName(me), userName(dirUID))
	switch {
	case me == 0:
		// Root was refused: not a question of owners.
		return fmt.Errorf("%s: root itself was refused, so check the file system (read-only mount, immutable files: lsattr) and security modules", msg), true
	case dirUID == me:
		return fmt.Errorf("%s: give every file of the cache back to it with `chown -R %d:%d %s` (as root), then run this again",
			msg, dirUID, dirGID, shellQuote(shown)), true
	default:
		return fmt.Errorf("%s: run this command as root (pkgswarm then runs as the directory's owner) or as that user "+
			"(sudo -u '#%d' pkgswarm …); or, to give the cache to the user running now, `chown -R %d:%d %s` (as root)",
			msg, dirUID, me, myGroup, shellQuote(shown)), true
	}
}

// deniedRE finds the permission errors Go's os package reports, in text.
var deniedRE = regexp.MustCompile(`\b(open|mkdir|remove|unlinkat|rename|lstat|stat|chmod|openat) (/[^\s"]*): ` + regexp.QuoteMeta(syscall.EACCES.Error()))

// foreignFile walks dir and returns the first file (in lexical order) not
// owned by uid, its owner, and how many such files there are. Files it
// cannot read the directory of are skipped.
func foreignFile(dir string, uid int) (first string, owner, n int) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			if n == 0 {
				first, owner = p, int(st.Uid)
			}
			n++
		}
		return nil
	})
	return first, owner, n
}

// ownerOf returns the owner of path, or of the nearest directory above it
// that exists.
func ownerOf(path string) (uid, gid int, err error) {
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			st := fi.Sys().(*syscall.Stat_t)
			return int(st.Uid), int(st.Gid), nil
		}
		if filepath.Dir(p) == p || !errors.Is(err, fs.ErrNotExist) {
			return -1, -1, err
		}
	}
}

// userName is "uid N (name)", or "uid N" for a user with no passwd entry
// (a DynamicUser outside its unit).
func userName(uid int) string {
	if uid < 0 {
		return "an unknown user"
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

// openDataDir opens the store in the data directory dir, as its owner (see
// runAsDataDirOwner), and returns it with the path the process reaches dir
// by. inUse is the advice given when another process holds the store.
func openDataDir(dir string, opts store.Options, log *slog.Logger, inUse string) (*store.Store, string, error) {
	use, err := runAsDataDirOwner(dir, log)
	if err != nil {
		return nil, "", err
	}
	opts.Dir = use
	st, err := store.Open(opts)
	switch {
	case err == nil:
		return st, use, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return nil, "", fmt.Errorf("the cache in %s is in use by a running pkgswarm: %s", dir, inUse)
	}
	if hint, ok := permissionHint(use, dir, err); ok {
		return nil, "", hint
	}
	return nil, "", fmt.Errorf("opening the cache in %s: %w", dir, err)
}
