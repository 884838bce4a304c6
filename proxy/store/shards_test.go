package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Open lays out every shard directory of blobs/sha256, so that no commit
// creates one: making a directory is one of the file system's slowest steps
// (an inode), and a fresh store's first downloads would else make about as
// many directories as files.
func TestOpenMakesEveryShardDirectory(t *testing.T) {
	s := openTest(t, Options{InMemoryIndex: true})
	names := listDir(t, s.blobDir)
	if len(names) != 256 {
		t.Fatalf("blobs/sha256 holds %d entries after Open, want the 256 shards", len(names))
	}
	for i, n := range names {
		if want := fmt.Sprintf("%02x", i); n != want {
			t.Fatalf("shard %d is %q, want %q", i, n, want)
		}
	}
}

// A shard directory removed behind the store's back is made again by the
// commit that needs it.
func TestCommitRemakesARemovedShard(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir, InMemoryIndex: true, SyncDelay: -1})
	b := []byte("a blob whose shard is gone")
	d := DigestOf(b)
	shard := filepath.Join(s.blobDir, d.String()[:2])
	if err := os.Remove(shard); err != nil {
		t.Fatal(err)
	}
	putBlob(t, s, b)
	if got, err := os.ReadFile(filepath.Join(shard, d.String())); err != nil || string(got) != string(b) {
		t.Fatalf("blob after its shard was removed: %q, %v", got, err)
	}
}
