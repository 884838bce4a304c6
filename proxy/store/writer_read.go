package store

import (
	"fmt"
	"os"
)

// OpenRead returns a read-only descriptor of the bytes written so far, for
// checks that need the whole file before Commit (an rpm's signature and
// payload digest). The caller closes it; reads should use ReadAt or start
// from offset 0. It fails once the Writer has finished.
func (w *Writer) OpenRead() (*os.File, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.stateErrLocked("read"); err != nil {
		return nil, err
	}
	if !w.fdOpen {
		return nil, fmt.Errorf("store: read download %s: temporary file closed", w.path)
	}
	f, err := dupFile(w.f)
	if err != nil {
		return nil, fmt.Errorf("store: read download %s: %w", w.path, err)
	}
	return f, nil
}
