package store

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The kill -9 test re-executes this test binary as a child that writes blobs in a
// loop, kills it at random moments, and checks the store it leaves behind.

const crashChildEnv = "PKGSWARM_STORE_CRASH_CHILD_DIR"

// TestCrashChild is the child's body; it does nothing unless run by TestKill9.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("helper process for TestKill9")
	}
	s, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		fmt.Printf("F open: %v\n", err)
		os.Exit(3)
	}
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	var committed []Digest
	for i := 0; ; i++ {
		content := randBytes(r, r.IntN(300_000))
		w, err := s.NewWriter()
		if err != nil {
			fmt.Printf("F writer: %v\n", err)
			os.Exit(3)
		}
		chunk := 1 + r.IntN(64<<10)
		resetAt := -1
		if r.IntN(4) == 0 {
			resetAt = r.IntN(len(content) + 1)
		}
		for off := 0; off < len(content); off += chunk {
			end := min(off+chunk, len(content))
			if resetAt >= off && resetAt < end {
				// A source failed at resetAt: start over, then go on.
				w.Write(content[off:resetAt])
				w.Reset()
				w.Write(content[:resetAt])
				w.Write(content[resetAt:end])
				continue
			}
			w.Write(content[off:end])
		}
		want := DigestOf(content)
		switch r.IntN(10) {
		case 0:
			w.Abort(errors.New("child abort"))
			continue
		case 1:
			want = DigestOf(append(content, 'x'))
			if err := w.Commit(want); !errors.Is(err, ErrDigestMismatch) {
				fmt.Printf("F mismatch commit: %v\n", err)
				os.Exit(3)
			}
			continue
		}
		if err := w.Commit(want); err != nil {
			fmt.Printf("F commit: %v\n", err)
			os.Exit(3)
		}
		fmt.Printf("C %s\n", want)
		committed = append(committed, want)
		url := fmt.Sprintf("http://deb.example.org/pool/%d/%s.deb", os.Getpid(), want)
		if err := s.PutURL(url, URLEntry{Digest: want, Size: int64(len(content)), Fetched: time.Now()}); err != nil {
			fmt.Printf("F put URL: %v\n", err)
			os.Exit(3)
		}
		fmt.Printf("U %s %s\n", want, url)
		if f, _, err := s.OpenBlob(committed[r.IntN(len(committed))]); err == nil {
			f.Close()
		} else if !IsNotFound(err) { // deleted ones are not found
			fmt.Printf("F open blob: %v\n", err)
			os.Exit(3)
		}
		switch r.IntN(20) {
		case 0:
			d := committed[r.IntN(len(committed))]
			fmt.Printf("D %s\n", d) // announced first: the kill may land mid-delete
			s.DeleteBlob(d)
		case 1:
			n := r.IntN(len(committed) + 1)
			s.Pin("child", committed[:n])
		case 2:
			s.flushAccess()
		}
	}
}

func TestKill9(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("running as the child")
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	committed := map[Digest]bool{} // digest → may have been deleted
	urls := map[string]Digest{}
	const iterations = 10
	for it := 0; it < iterations; it++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of commits, or (one time in three) after a
		// random delay that may land during Open's recovery.
		killAfter := 1 + r.IntN(30)
		if r.IntN(3) == 0 {
			killAfter = -1
			delay := time.Duration(r.IntN(300)) * time.Millisecond
			go func() { time.Sleep(delay); cmd.Process.Signal(syscall.SIGKILL) }()
		}
		sc := bufio.NewScanner(out)
		commits := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || len(f[0]) != 1 {
				continue // the test framework's own output
			}
			switch f[0] {
			case "F":
				cmd.Process.Kill()
				t.Fatalf("child failed: %s", sc.Text())
			case "C":
				d, err := ParseDigest(f[1])
				if err != nil {
					t.Fatal(err)
				}
				committed[d] = false
				if commits++; commits == killAfter {
					cmd.Process.Signal(syscall.SIGKILL)
				}
			case "U":
				d, _ := ParseDigest(f[1])
				urls[f[2]] = d
			case "D":
				d, _ := ParseDigest(f[1])
				committed[d] = true
			}
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child ended with %v, want killed by SIGKILL", err)
		}
		t.Logf("iteration %d: killed after %d commits", it, commits)
		checkAfterCrash(t, dir, committed, urls)
	}
}

func checkAfterCrash(t *testing.T, dir string, committed map[Digest]bool, urls map[string]Digest) {
	t.Helper()
	s, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open after kill -9: %v", err)
	}
	defer s.Close()
	if tmp := listDir(t, filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("temporary files survive Open: %v", tmp)
	}
	// Every file in the blob directory is a blob the store serves, and its
	// bytes hash to its name.
	files := 0
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		files++
		d, err := ParseDigest(de.Name())
		if err != nil {
			t.Errorf("stray file in the blob directory: %s", p)
			return nil
		}
		if !s.HasBlob(d) {
			t.Errorf("blob file %s is not served", p)
		}
		return nil
	})
	served := 0
	s.Walk(func(d Digest, size int64) error {
		served++
		f, n, err := s.OpenBlob(d)
		if err != nil {
			t.Errorf("OpenBlob(%s): %v", d, err)
			return nil
		}
		defer f.Close()
		h := sha256.New()
		m, err := io.Copy(h, f)
		if err != nil || m != n || n != size || Digest(h.Sum(nil)) != d {
			t.Errorf("blob %s: %d bytes (index %d/%d) hashing to %x, %v", d, m, n, size, h.Sum(nil), err)
		}
		return nil
	})
	if served != files {
		t.Errorf("store serves %d blobs, %d files on disk", served, files)
	}
	for d, maybeDeleted := range committed {
		if !maybeDeleted && !s.HasBlob(d) {
			t.Errorf("blob %s was committed before the kill but is gone", d)
		}
	}
	for url, d := range urls {
		if e, err := s.GetURL(url); err != nil || e.Digest != d {
			t.Errorf("URL entry %s written before the kill: %+v, %v", url, e, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}
