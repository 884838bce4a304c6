package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseDigest(t *testing.T) {
	t.Parallel()
	good := DigestOf([]byte("x"))
	tests := []struct {
		name, in string
		want     Digest
		wantErr  bool
	}{
		{name: "lower", in: good.String(), want: good},
		{name: "upper", in: strings.ToUpper(good.String()), want: good},
		{name: "short", in: good.String()[:62], wantErr: true},
		{name: "long", in: good.String() + "00", wantErr: true},
		{name: "not hex", in: "zz" + good.String()[2:], wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := ParseDigest(tc.in)
			if (err != nil) != tc.wantErr || d != tc.want {
				t.Fatalf("ParseDigest(%q) = %s, %v", tc.in, d, err)
			}
		})
	}
	if !(Digest{}).IsZero() || good.IsZero() {
		t.Fatal("IsZero wrong")
	}
}

func TestOpenRequiresDir(t *testing.T) {
	t.Parallel()
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
}

func TestOpenLocksDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openTest(t, Options{Dir: dir, InMemoryIndex: true})
	if s, err := Open(Options{Dir: dir, InMemoryIndex: true, Logger: testLogger(t)}); err == nil {
		s.Close()
		t.Fatal("a second Open of one directory succeeded")
	}
}

func TestOpenRemovesTempLeftovers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir})
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("a download that never finished")
	w.Write(content)
	// A leftover that happens to be complete and correctly named must not be
	// served either: only renames out of tmp/ make blobs.
	os.WriteFile(filepath.Join(dir, "tmp", DigestOf(content).String()), content, 0o644)
	os.MkdirAll(filepath.Join(dir, "tmp", "sub"), 0o755)
	s.Close()

	s2 := openTest(t, Options{Dir: dir})
	if got := listDir(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Fatalf("tmp holds %v after Open", got)
	}
	if s2.HasBlob(DigestOf(content)) {
		t.Fatal("a temporary file became a blob")
	}
	if n, _ := s2.Usage(); n != 0 {
		t.Fatalf("Usage = %d blobs, want 0", n)
	}
}

func TestReopenPersists(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir})
	var ds []Digest
	for i := 0; i < 20; i++ {
		ds = append(ds, putBlob(t, s, []byte(fmt.Sprintf("blob %d", i))))
	}
	fetched := time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC)
	ue := URLEntry{Digest: ds[0], Size: 6, ContentType: "application/vnd.debian.binary-package", LastModified: "Sat, 01 Mar 2025 12:00:00 GMT", ETag: `"abc"`, Fetched: fetched, Verified: true}
	if err := s.PutURL("http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb", ue); err != nil {
		t.Fatal(err)
	}
	rr := RootRecord{Repo: "deb.example.org/debian bookworm", URL: "http://deb.example.org/debian/dists/bookworm/InRelease", Digest: ds[1], Date: fetched, ValidUntil: fetched.Add(7 * 24 * time.Hour), Signer: "ABCD1234", Accepted: fetched.Add(time.Minute)}
	if err := s.PutRoot(rr); err != nil {
		t.Fatal(err)
	}
	if err := s.PutExpects(map[string]Expect{"deb.example.org/debian/dists/bookworm/main/binary-amd64/Packages.xz": {SHA256: ds[2], Size: 123, Root: rr.URL}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta("peer/node1", []byte("10.0.0.2:3142")); err != nil {
		t.Fatal(err)
	}
	if err := s.Pin("root:bookworm", ds[:5]); err != nil {
		t.Fatal(err)
	}
	readBlob(t, s, ds[3]) // most recently used
	ids := map[Digest]fileID{}
	for _, d := range ds {
		ids[d] = statBlob(t, s, d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.OpenBlob(ds[0]); err == nil {
		t.Fatal("OpenBlob on a closed store succeeded")
	}
	if err := s.PutMeta("k", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutMeta on a closed store: %v", err)
	}

	s2 := openTest(t, Options{Dir: dir})
	if n, _ := s2.Usage(); n != 20 {
		t.Fatalf("after reopen %d blobs, want 20", n)
	}
	if bad, err := s2.Verify(context.Background(), nil); err != nil || len(bad) != 0 {
		t.Fatalf("Verify after reopen: %v, %v", bad, err)
	}
	for d, id := range ids {
		if got := statBlob(t, s2, d); got != id || got.mode != 0o444 {
			t.Fatalf("blob file %s changed across reopen and Verify: %+v -> %+v", d, id, got)
		}
	}
	for i, d := range ds {
		// Read the files directly: OpenBlob would change the LRU order checked below.
		b, err := os.ReadFile(s2.BlobPath(d))
		if err != nil {
			t.Fatal(err)
		}
		assertBytes(t, "blob after reopen", b, []byte(fmt.Sprintf("blob %d", i)))
	}
	gotU, err := s2.GetURL("http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb")
	if err != nil || gotU != ue {
		t.Fatalf("GetURL after reopen = %+v, %v; want %+v", gotU, err, ue)
	}
	gotR, err := s2.GetRoot(rr.Repo)
	if err != nil || !rootEqual(gotR, rr) {
		t.Fatalf("GetRoot after reopen = %+v, %v", gotR, err)
	}
	if x, err := s2.GetExpect("deb.example.org/debian/dists/bookworm/main/binary-amd64/Packages.xz"); err != nil || x.SHA256 != ds[2] || x.Size != 123 {
		t.Fatalf("GetExpect after reopen = %+v, %v", x, err)
	}
	if v, err := s2.GetMeta("peer/node1"); err != nil || string(v) != "10.0.0.2:3142" {
		t.Fatalf("GetMeta after reopen = %q, %v", v, err)
	}
	if got := s2.PinSets(); got["root:bookworm"] != 5 {
		t.Fatalf("pin sets after reopen: %v", got)
	}
	// LRU order survived: evicting down to one blob keeps a pinned one (the
	// pinned ones go last), and among pinned ones the most recently read.
	if _, err := s2.Evict(int64(len(fmt.Sprintf("blob %d", 3)))); err != nil {
		t.Fatal(err)
	}
	if n, _ := s2.Usage(); n != 1 || !s2.HasBlob(ds[3]) {
		t.Fatalf("after Evict: %d blobs, has ds[3]=%v", n, s2.HasBlob(ds[3]))
	}
}

func rootEqual(a, b RootRecord) bool {
	return a.Repo == b.Repo && a.URL == b.URL && a.Digest == b.Digest && a.Date.Equal(b.Date) &&
		a.ValidUntil.Equal(b.ValidUntil) && a.Signer == b.Signer && a.Accepted.Equal(b.Accepted) &&
		a.Untrusted == b.Untrusted && a.Detached == b.Detached
}

func TestIndex(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	d := DigestOf([]byte("x"))

	for _, err := range []error{
		func() error { _, err := s.GetURL("http://a/b"); return err }(),
		func() error { _, err := s.GetExpect("a/b"); return err }(),
		func() error { _, err := s.GetRoot("repo"); return err }(),
		func() error { _, err := s.GetMeta("k"); return err }(),
		func() error { _, _, err := s.OpenBlob(d); return err }(),
		func() error { _, err := s.Stat(d); return err }(),
		s.DeleteBlob(d),
	} {
		if !IsNotFound(err) {
			t.Errorf("want ErrNotFound, got %v", err)
		}
	}

	e := URLEntry{Digest: d, Size: 1}
	s.PutURL("http://a/b", e)
	if got, err := s.GetURL("http://a/b"); err != nil || got != e {
		t.Fatalf("GetURL = %+v, %v", got, err)
	}
	s.DeleteURL("http://a/b")
	if _, err := s.GetURL("http://a/b"); !IsNotFound(err) {
		t.Fatalf("GetURL after DeleteURL: %v", err)
	}

	for _, repo := range []string{"b", "a", "c"} {
		if err := s.PutRoot(RootRecord{Repo: repo, URL: "http://" + repo}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutRoot(RootRecord{}); err == nil {
		t.Fatal("PutRoot without Repo succeeded")
	}
	roots, err := s.Roots()
	if err != nil || len(roots) != 3 || roots[0].Repo != "a" || roots[2].Repo != "c" {
		t.Fatalf("Roots = %+v, %v", roots, err)
	}

	s.PutMeta("peer/1", []byte("one"))
	s.PutMeta("peer/2", []byte("two"))
	s.PutMeta("swarm/x", []byte("x"))
	var keys []string
	s.ScanMeta("peer/", func(k string, v []byte) error { keys = append(keys, k+"="+string(v)); return nil })
	if !slices.Equal(keys, []string{"peer/1=one", "peer/2=two"}) {
		t.Fatalf("ScanMeta = %v", keys)
	}

	big := []byte(strings.Repeat("m", maxValueLen))
	if err := s.PutMeta("big", big); err != nil {
		t.Fatalf("PutMeta of %d bytes: %v", len(big), err)
	}
	if v, err := s.GetMeta("big"); err != nil || string(v) != string(big) {
		t.Fatalf("GetMeta of %d bytes: %d bytes, %v", len(big), len(v), err)
	}
	if err := s.PutMeta("too big", append(big, 'm')); err == nil || strings.Contains(err.Error(), "mmmm") || len(err.Error()) > 200 {
		t.Fatalf("PutMeta over the limit: %.300v", err)
	}
	// Pin chunks (64 KiB values) fit an in-memory index too.
	many := make([]Digest, 3*pinChunk)
	for i := range many {
		many[i] = DigestOf([]byte(fmt.Sprint("pin", i)))
	}
	if err := s.Pin("many", many); err != nil {
		t.Fatalf("Pin of %d digests in memory: %v", len(many), err)
	}
	if err := s.PutURL(strings.Repeat("x", maxKeyLen+1), e); err == nil {
		t.Fatal("PutURL with a huge key succeeded")
	}

	batch := map[string]Expect{}
	for i := 0; i < 5000; i++ {
		batch[fmt.Sprintf("deb.example.org/debian/pool/main/p%d.deb", i)] = Expect{SHA256: DigestOf([]byte{byte(i), byte(i >> 8)}), Size: int64(i), Root: "r"}
	}
	if err := s.PutExpects(batch); err != nil {
		t.Fatal(err)
	}
	for k, want := range batch {
		if got, err := s.GetExpect(k); err != nil || got != want {
			t.Fatalf("GetExpect(%s) = %+v, %v; want %+v", k, got, err, want)
		}
	}
	if err := s.DeleteExpects([]string{"deb.example.org/debian/pool/main/p1.deb"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetExpect("deb.example.org/debian/pool/main/p1.deb"); !IsNotFound(err) {
		t.Fatalf("GetExpect after DeleteExpects: %v", err)
	}
}

func TestEvictLRUWithPins(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	// Ten blobs of 100 bytes, committed in order 0..9.
	var ds []Digest
	for i := 0; i < 10; i++ {
		b := make([]byte, 100)
		b[0] = byte(i)
		ds = append(ds, putBlob(t, s, b))
	}
	// Read 0 and 1 again: they become the most recent.
	readBlob(t, s, ds[0])
	readBlob(t, s, ds[1])
	// Pin 2 and 3 (oldest unread): they go after every unpinned blob.
	if err := s.Pin("root", []Digest{ds[2], ds[3], DigestOf([]byte("not stored"))}); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(ds[2]); err != nil || !info.Pinned || info.Size != 100 {
		t.Fatalf("Stat(pinned) = %+v, %v", info, err)
	}

	// LRU order is now: unpinned 4,5,6,7,8,9,0,1 then pinned 2,3.
	steps := []struct {
		target int64
		gone   []int
	}{
		{target: 1000, gone: nil},
		{target: 750, gone: []int{4, 5, 6}},
		{target: 300, gone: []int{7, 8, 9, 0}},
		{target: 250, gone: []int{1}},
		{target: 100, gone: []int{2}},
		{target: 0, gone: []int{3}},
	}
	gone := map[int]bool{}
	for _, st := range steps {
		freed, err := s.Evict(st.target)
		if err != nil {
			t.Fatal(err)
		}
		if freed != int64(100*len(st.gone)) {
			t.Fatalf("Evict(%d) freed %d, want %d", st.target, freed, 100*len(st.gone))
		}
		for _, i := range st.gone {
			gone[i] = true
		}
		for i, d := range ds {
			if s.HasBlob(d) == gone[i] {
				t.Fatalf("after Evict(%d): blob %d present=%v, want %v", st.target, i, s.HasBlob(d), !gone[i])
			}
			if _, err := os.Stat(s.BlobPath(d)); (err == nil) == gone[i] {
				t.Fatalf("after Evict(%d): file of blob %d exists=%v", st.target, i, err == nil)
			}
		}
	}
}

func TestPinReplace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir})
	a, b := putBlob(t, s, []byte("aaaa")), putBlob(t, s, []byte("bbbb"))
	// A set larger than one chunk, to cover chunking.
	big := make([]Digest, pinChunk*2+5)
	for i := range big {
		big[i] = DigestOf([]byte(fmt.Sprint(i)))
	}
	big[7] = a
	if err := s.Pin("big", big); err != nil {
		t.Fatal(err)
	}
	if err := s.Pin("x", []Digest{a}); err != nil {
		t.Fatal(err)
	}
	if err := s.Pin("x", []Digest{b}); err != nil { // replaces: a stays pinned only by "big"
		t.Fatal(err)
	}
	if err := s.Pin("big", nil); err != nil { // removes the set
		t.Fatal(err)
	}
	if ia, _ := s.Stat(a); ia.Pinned {
		t.Fatal("a is still pinned after both sets dropped it")
	}
	if ib, _ := s.Stat(b); !ib.Pinned {
		t.Fatal("b is not pinned")
	}
	if err := s.Pin("big", big); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openTest(t, Options{Dir: dir})
	if got := s2.PinSets(); len(got) != 2 || got["big"] != len(big) || got["x"] != 1 {
		t.Fatalf("pin sets after reopen: %v", got)
	}
	// Exactly one generation of chunks is left in the index.
	keys, err := s2.keysWithPrefix(pinDataPrefix("big"))
	if err != nil || len(keys) != 3 {
		t.Fatalf("pin chunks of big: %d keys, %v; want 3", len(keys), err)
	}
}

func TestAutoEvict(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true, MaxBytes: 1000})
	var evicted int
	for i := 0; i < 30; i++ {
		b := make([]byte, 100)
		b[0] = byte(i)
		d := putBlob(t, s, b)
		if !s.HasBlob(d) {
			t.Fatalf("blob %d evicted by its own commit", i)
		}
		if _, bytes := s.Usage(); bytes > 1000 {
			t.Fatalf("after commit %d the store holds %d bytes, over MaxBytes 1000", i, bytes)
		}
	}
	for i := 0; i < 30; i++ {
		b := make([]byte, 100)
		b[0] = byte(i)
		if !s.HasBlob(DigestOf(b)) {
			evicted++
		}
	}
	if n, _ := s.Usage(); evicted != 30-n {
		t.Fatalf("evicted %d, usage %d", evicted, n)
	}
}

func TestWalk(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	want := map[Digest]int64{}
	for i := 0; i < 50; i++ {
		b := []byte(strings.Repeat("w", i))
		want[putBlob(t, s, b)] = int64(i)
	}
	got := map[Digest]int64{}
	var prev Digest
	err := s.Walk(func(d Digest, size int64) error {
		if string(d[:]) <= string(prev[:]) {
			t.Errorf("Walk out of order: %s after %s", d, prev)
		}
		prev = d
		got[d] = size
		return s.DeleteBlob(d) // fn may call the store
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Walk visited %d blobs, want %d", len(got), len(want))
	}
	for d, n := range want {
		if got[d] != n {
			t.Fatalf("Walk size of %s = %d, want %d", d, got[d], n)
		}
	}
	stop := errors.New("stop")
	putBlob(t, s, []byte("1"))
	putBlob(t, s, []byte("2"))
	calls := 0
	if err := s.Walk(func(Digest, int64) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("Walk with a failing fn: %v after %d calls", err, calls)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	good := putBlob(t, s, []byte("good bytes"))
	flipped := putBlob(t, s, []byte("this one gets a flipped byte"))
	short := putBlob(t, s, []byte("this one gets truncated"))
	for d, mutate := range map[Digest]func(string) error{
		flipped: func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("T"), 0)
			return err
		},
		short: func(p string) error { return os.Truncate(p, 5) },
	} {
		p := s.BlobPath(d)
		os.Chmod(p, 0o644)
		if err := mutate(p); err != nil {
			t.Fatal(err)
		}
	}
	var calls int
	var lastDone, lastTotal int64
	bad, err := s.Verify(context.Background(), func(done, total int64) { calls++; lastDone, lastTotal = done, total })
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(bad, func(a, b Digest) int { return strings.Compare(a.String(), b.String()) })
	want := []Digest{flipped, short}
	slices.SortFunc(want, func(a, b Digest) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(bad, want) {
		t.Fatalf("Verify found %v, want %v", bad, want)
	}
	if calls != 3 || lastDone != lastTotal || lastTotal != int64(len("good bytes")+len("this one gets a flipped byte")+len("this one gets truncated")) {
		t.Fatalf("progress: %d calls, last %d/%d", calls, lastDone, lastTotal)
	}
	if s.HasBlob(flipped) || s.HasBlob(short) || !s.HasBlob(good) {
		t.Fatal("Verify did not delete exactly the bad blobs")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Verify(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify with a cancelled context: %v", err)
	}
}

func TestReconcileOnOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir})
	kept := putBlob(t, s, []byte("kept"))
	lost := putBlob(t, s, []byte("file removed behind the store's back"))
	s.Close()
	os.Remove(s.BlobPath(lost))
	// A file renamed into place by a process that died before writing its
	// index record.
	orphan := []byte("orphan")
	od := DigestOf(orphan)
	os.MkdirAll(filepath.Dir(s.BlobPath(od)), 0o755)
	os.WriteFile(s.BlobPath(od), orphan, 0o444)
	// Stray files are ignored.
	os.WriteFile(filepath.Join(filepath.Dir(s.BlobPath(od)), "README"), []byte("x"), 0o644)

	s2 := openTest(t, Options{Dir: dir})
	if !s2.HasBlob(kept) || s2.HasBlob(lost) || !s2.HasBlob(od) {
		t.Fatalf("after reconcile: kept=%v lost=%v orphan=%v", s2.HasBlob(kept), s2.HasBlob(lost), s2.HasBlob(od))
	}
	if n, b := s2.Usage(); n != 2 || b != int64(len("kept")+len(orphan)) {
		t.Fatalf("Usage = %d, %d", n, b)
	}
	// The records were fixed: the orphan now has one, the lost blob none.
	s2.Close()
	s3 := openTest(t, Options{Dir: dir})
	if n, _ := s3.Usage(); n != 2 {
		t.Fatalf("Usage after second reopen = %d", n)
	}
}

func TestOpenBlobMissingFile(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	d := putBlob(t, s, []byte("deleted externally"))
	os.Remove(s.BlobPath(d))
	if _, _, err := s.OpenBlob(d); !IsNotFound(err) {
		t.Fatalf("OpenBlob of a vanished file: %v", err)
	}
	if s.HasBlob(d) {
		t.Fatal("vanished blob still listed")
	}
	putBlob(t, s, []byte("deleted externally")) // can be stored again
	assertBytes(t, "re-stored", readBlob(t, s, d), []byte("deleted externally"))
}

func TestOpenBlobSurvivesEviction(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	d := putBlob(t, s, []byte("still readable"))
	f, _, err := s.OpenBlob(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := s.Evict(0); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 100)
	n, _ := f.Read(b)
	if string(b[:n]) != "still readable" {
		t.Fatalf("read %q from an evicted open blob", b[:n])
	}
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	type ev struct {
		d    Digest
		size int64
	}
	var got []ev
	s.Subscribe(func(d Digest, size int64) {
		if !s.HasBlob(d) {
			t.Errorf("subscriber called before %s is readable", d)
		}
		got = append(got, ev{d, size})
	})
	a := putBlob(t, s, []byte("one"))
	w, _ := s.NewWriter()
	w.Write([]byte("bad"))
	w.Commit(DigestOf([]byte("not bad")))
	putBlob(t, s, []byte("one"))
	if want := []ev{{a, 3}, {a, 3}}; !slices.Equal(got, want) {
		t.Fatalf("subscriber saw %v, want %v", got, want)
	}
}

func TestFlushAccessPersistsLRU(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir})
	a := putBlob(t, s, []byte("a"))
	b := putBlob(t, s, []byte("b"))
	readBlob(t, s, a)
	if err := s.flushAccess(); err != nil {
		t.Fatal(err)
	}
	// Delete and re-commit b between reads, then flush again: no stale record.
	s.DeleteBlob(b)
	putBlob(t, s, []byte("b"))
	if err := s.flushAccess(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openTest(t, Options{Dir: dir})
	s2.Evict(1) // keep the most recent: b (re-committed after a was read)
	if s2.HasBlob(a) || !s2.HasBlob(b) {
		t.Fatalf("after reopen and Evict(1): a=%v b=%v, want b only", s2.HasBlob(a), s2.HasBlob(b))
	}
}

func TestPinCrashMidReplace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir})
	a := putBlob(t, s, []byte("a"))
	if err := s.Pin("set", []Digest{a}); err != nil {
		t.Fatal(err)
	}
	// A Pin that died after writing the next generation's chunks but before
	// switching the header.
	b := DigestOf([]byte("b"))
	wb := badgerBatch{wb: s.db.NewWriteBatch()}
	wb.set(pinDataKey("set", 2, 0), b[:])
	wb.set(pinDataKey("other", 1, 0), b[:]) // a set whose header was never written
	if err := wb.flush(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openTest(t, Options{Dir: dir})
	if got := s2.PinSets(); len(got) != 1 || got["set"] != 1 {
		t.Fatalf("pin sets after reopen: %v", got)
	}
	if info, _ := s2.Stat(a); !info.Pinned {
		t.Fatal("the committed generation of the set was lost")
	}
	keys, err := s2.keysWithPrefix([]byte{prefixPinData})
	if err != nil || len(keys) != 1 {
		t.Fatalf("pin chunks after reopen: %d, %v; want the one of generation 1", len(keys), err)
	}
}

func TestOpenEvictsOverLowerBound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir})
	for i := 0; i < 10; i++ {
		putBlob(t, s, []byte(fmt.Sprintf("blob number %02d", i))) // 14 bytes each
	}
	s.Close()
	s2 := openTest(t, Options{Dir: dir, MaxBytes: 50})
	if n, b := s2.Usage(); b > 50 || n != 3 {
		t.Fatalf("after Open with MaxBytes 50: %d blobs, %d bytes; want 3 blobs", n, b)
	}
	for i := 7; i < 10; i++ {
		if !s2.HasBlob(DigestOf([]byte(fmt.Sprintf("blob number %02d", i)))) {
			t.Fatalf("blob %d (among the most recent) was evicted", i)
		}
	}
}
