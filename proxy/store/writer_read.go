package store

import (
	"fmt"
	"os"
)

// OpenRead returns a read-only descriptor of the bytes written so far, for
// checks that need the whole file before Commit (an rpm's signature and
// payload digest). The caller closes it. The descriptor has its own file
// offset (it starts at 0), so reading or seeking it never disturbs the Writer.
// It fails once the Writer has finished.
func (w *Writer) OpenRead() (*os.File, error) {
	// Holding wmu keeps Commit and Abort from moving or removing the file
	// while it is opened by name.
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	err := w.stateErrLocked("read")
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(w.path)
	if err != nil {
		return nil, fmt.Errorf("store: read download %s: %w", w.path, err)
	}
	return f, nil
}
