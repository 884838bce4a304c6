package store

import (
	"os"
	"path/filepath"
	"testing"
)

// A kill between badger's creation of a memtable or value-log file and its
// first write leaves the file empty, and badger.Open then fails with
// z.NewFile ("Create a new file"; dgraph-io/badger#2207): TestKill9 hit it
// once in 20 kills. Open removes such empty files first (they hold no
// entries), and opens.
func TestOpenAfterAKillInTheIndexFileCreation(t *testing.T) {
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, Options{Dir: dir})
			d := putBlob(t, s, []byte("held before the kill"))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "index", name), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			s2, err := Open(Options{Dir: dir, Logger: testLogger(t)})
			if err != nil {
				t.Fatalf("Open with an empty index/%s: %v", name, err)
			}
			defer s2.Close()
			if !s2.HasBlob(d) {
				t.Error("the blob held before the kill is gone")
			}
		})
	}
}
