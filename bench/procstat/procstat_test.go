package procstat

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		text    string
		want    Status
		wantErr string
	}{
		{"process", "Name:\tnginx\nPPid:\t12\nVmHWM:\t   15600 kB\nVmRSS:\t   12000 kB\n", Status{RSS: 12000 << 10, HWM: 15600 << 10, PPid: 12}, ""},
		{"kernel thread", "Name:\tkthreadd\nPPid:\t0\n", Status{}, ""},
		{"no ppid", "Name:\tx\nVmRSS:\t1 kB\n", Status{}, "no PPid"},
		{"bad unit", "PPid:\t1\nVmRSS:\t1 MB\n", Status{}, "not a size in kB"},
		{"negative", "PPid:\t1\nVmHWM:\t-5 kB\n", Status{}, "not a size in kB"},
		{"bad ppid", "PPid:\tx\n", Status{}, "not a process id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseStatus(tc.text)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseStatus error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseStatus = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	tail := " S 7 7 7 0 -1 4194560 100 0 0 0 150 50 20 30 20 0 1 0 100 1000 10"
	tests := []struct {
		name    string
		text    string
		want    Stat
		wantErr string
	}{
		{"plain", "42 (approx)" + tail, Stat{PPid: 7, CPU: 2500 * time.Millisecond}, ""},
		{"name with spaces and parens", "42 (a (b) c)" + tail, Stat{PPid: 7, CPU: 2500 * time.Millisecond}, ""},
		{"no paren", "42 approx S 1", Stat{}, "no ')'"},
		{"short", "42 (x) S 1 2 3", Stat{}, "fields after"},
		{"bad time", "42 (x) S 7 7 7 0 -1 0 0 0 0 0 x 1 1 1", Stat{}, "not a tick count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseStat(tc.text)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseStat error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseStat = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add("Name:\tx\nPPid:\t1\nVmHWM:\t10 kB\nVmRSS:\t5 kB\n")
	f.Add("PPid:\t\nVmRSS:\t kB")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseStatus(text)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if s.RSS < 0 || s.HWM < 0 || s.PPid < 0 {
			t.Fatalf("ParseStatus(%q) = %+v: negative value accepted", text, s)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add("1 (init) S 0 1 1 0 -1 0 0 0 0 0 5 6 7 8 20 0 1 0 1 1 1")
	f.Add("1 ()) S")
	f.Add(")")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseStat(text)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if s.PPid < 0 || s.CPU < 0 {
			t.Fatalf("ParseStat(%q) = %+v: negative value accepted", text, s)
		}
	})
}

// TestTreeSeesChild reads this process's real tree: a child it started
// must be in it, and the sums must be positive.
func TestTreeSeesChild(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pids, err := Tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if pids[0] != os.Getpid() || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("Tree(%d) = %v, want this process first and child %d in it", os.Getpid(), pids, cmd.Process.Pid)
	}
	rss, hwm, err := TreeMemory(os.Getpid())
	if err != nil || rss <= 0 || hwm < rss/2 {
		t.Fatalf("TreeMemory = %d, %d, %v; want positive sizes", rss, hwm, err)
	}
	if err := ResetPeak(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := TreeCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	s := Sample(os.Getpid(), time.Millisecond)
	if peak := s.Stop(); peak <= 0 {
		t.Fatalf("Sampler peak = %d, want > 0 (it samples once before the first tick)", peak)
	}
	if _, err := Tree(1 << 30); err == nil {
		t.Fatal("Tree of a process that does not exist: no error")
	}
}
