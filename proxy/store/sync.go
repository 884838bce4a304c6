package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// syncBlobs fsyncs each file of the batch and each directory holding one. A
// blob deleted meanwhile needs nothing. (Not syncfs: one call, but it writes
// out every process's dirty data on the file system, a second after
// pkgswarm's last commit; beside a benchmark's apt clients it doubled the
// pressure on the disk for no gain in time.)
func syncBlobs(s *Store, batch map[Digest]int64) error {
	dirs := map[string]bool{s.blobDir: true}
	for d := range batch {
		p := s.BlobPath(d)
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
		dirs[filepath.Dir(p)] = true
	}
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}
