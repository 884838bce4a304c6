//go:build !linux

package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// syncBlobs fsyncs each file of the batch and each directory holding one
// (no syncfs here). A blob deleted meanwhile needs nothing.
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
