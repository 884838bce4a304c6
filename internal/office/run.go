package office

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

// ErrSkipped is wrapped by Run's error when fn skipped (e.g. not root).
var ErrSkipped = errors.New("skipped")

// Run calls fn with a testing.TB for programs that are not tests, such as
// benchmark commands, so they can use New, netlab and testrepo as tests do.
// Logs go to out. Fatal and FailNow (and Skip, SkipNow) end fn at once, as in
// a test; they must be called from fn's goroutine. When fn returns or ends,
// the context is cancelled and the cleanups run, last registered first, and
// TempDir directories are removed. Run returns nil when nothing failed, an
// error quoting every Error/Fatal message when something did, and an error
// wrapping ErrSkipped when fn skipped. A panic other than those is passed on
// after the cleanups.
func Run(name string, out io.Writer, fn func(tb testing.TB)) (err error) {
	r := &runner{name: name, out: out}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	defer func() {
		v := recover()
		if _, ok := v.(stopNow); ok {
			v = nil
		}
		r.cancel()
		r.runCleanups()
		if v != nil {
			panic(v)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case r.failed:
			err = fmt.Errorf("%s failed: %s", name, strings.Join(r.errs, "; "))
		case r.skipped:
			err = fmt.Errorf("%s: %w: %s", name, ErrSkipped, strings.Join(r.skips, "; "))
		}
	}()
	fn(r)
	return nil
}

// stopNow is the panic value FailNow and SkipNow use to end fn.
type stopNow struct{}

// runner implements testing.TB outside a test. The embedded interface is nil
// and only gives the unexported method testing.TB requires; every exported
// method is defined here.
type runner struct {
	testing.TB

	name   string
	out    io.Writer
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex // protects the fields below
	cleanups []func()
	failed   bool
	skipped  bool
	errs     []string // Error and Fatal messages
	skips    []string // Skip messages
	nTemp    int
}

var _ testing.TB = (*runner)(nil)

func (r *runner) runCleanups() {
	for {
		r.mu.Lock()
		if len(r.cleanups) == 0 {
			r.mu.Unlock()
			return
		}
		fn := r.cleanups[len(r.cleanups)-1]
		r.cleanups = r.cleanups[:len(r.cleanups)-1]
		r.mu.Unlock()
		func() {
			defer func() {
				if v := recover(); v != nil {
					if _, ok := v.(stopNow); !ok {
						r.Errorf("cleanup panicked: %v", v)
					}
				}
			}()
			fn()
		}()
	}
}

func (r *runner) log(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, "%s: %s\n", r.name, strings.TrimRight(s, "\n"))
}

func (r *runner) ArtifactDir() string { return r.TempDir() }

func (r *runner) Attr(key, value string) { r.log(fmt.Sprintf("=== ATTR %s %s", key, value)) }

func (r *runner) Cleanup(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, fn)
}

func (r *runner) Error(args ...any) { r.fail(fmt.Sprintln(args...)) }

func (r *runner) Errorf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }

func (r *runner) fail(msg string) {
	msg = strings.TrimRight(msg, "\n")
	r.log(msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.errs = append(r.errs, msg)
}

func (r *runner) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}

func (r *runner) FailNow() {
	r.Fail()
	panic(stopNow{})
}

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *runner) Fatal(args ...any) {
	r.Error(args...)
	panic(stopNow{})
}

func (r *runner) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(stopNow{})
}

func (r *runner) Helper() {}

func (r *runner) Log(args ...any) { r.log(fmt.Sprintln(args...)) }

func (r *runner) Logf(format string, args ...any) { r.log(fmt.Sprintf(format, args...)) }

func (r *runner) Name() string { return r.name }

// Setenv sets an environment variable until the cleanups run.
func (r *runner) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		r.Fatalf("Setenv %s: %v", key, err)
	}
	r.Cleanup(func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	})
}

// Chdir changes the working directory until the cleanups run.
func (r *runner) Chdir(dir string) {
	old, err := os.Getwd()
	if err != nil {
		r.Fatalf("Chdir %s: %v", dir, err)
	}
	if err := os.Chdir(dir); err != nil {
		r.Fatalf("Chdir %s: %v", dir, err)
	}
	r.Cleanup(func() { os.Chdir(old) })
}

func (r *runner) Skip(args ...any) {
	r.skip(fmt.Sprintln(args...))
}

func (r *runner) Skipf(format string, args ...any) {
	r.skip(fmt.Sprintf(format, args...))
}

func (r *runner) skip(msg string) {
	msg = strings.TrimRight(msg, "\n")
	r.log(msg)
	r.mu.Lock()
	r.skipped = true
	r.skips = append(r.skips, msg)
	r.mu.Unlock()
	panic(stopNow{})
}

func (r *runner) SkipNow() {
	r.mu.Lock()
	r.skipped = true
	r.mu.Unlock()
	panic(stopNow{})
}

func (r *runner) Skipped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.skipped
}

// TempDir makes a new directory, removed when the cleanups run.
func (r *runner) TempDir() string {
	r.mu.Lock()
	r.nTemp++
	n := r.nTemp
	r.mu.Unlock()
	dir, err := os.MkdirTemp("", fmt.Sprintf("office-%s-%03d-", sanitizeName(r.name), n))
	if err != nil {
		r.Fatalf("TempDir: %v", err)
	}
	r.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			r.Logf("remove %s: %v", dir, err)
		}
	})
	return dir
}

func (r *runner) Context() context.Context { return r.ctx }

func (r *runner) Output() io.Writer {
	return writerFunc(func(p []byte) (int, error) { r.log(string(p)); return len(p), nil })
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// sanitizeName keeps letters, digits and '-' of s, at most 20 of them.
func sanitizeName(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= 20 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "run"
	}
	return b.String()
}
