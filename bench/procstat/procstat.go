package procstat

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// userHZ is the unit of /proc/PID/stat times (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// Status is what the benchmarks read from /proc/PID/status.
type Status struct {
	RSS  int64 // VmRSS, bytes
	HWM  int64 // VmHWM, bytes: peak RSS since start or ResetPeak
	PPid int
}

// Stat is what the benchmarks read from /proc/PID/stat.
type Stat struct {
	PPid int
	// CPU is utime + stime + cutime + cstime.
	CPU time.Duration
}

// ParseStatus parses the text of /proc/PID/status. A kernel thread has no
// Vm lines; its sizes are 0.
func ParseStatus(text string) (Status, error) {
	var s Status
	var sawPPid bool
	for line := range strings.SplitSeq(text, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "VmRSS", "VmHWM":
			num, unit, _ := strings.Cut(val, " ")
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n < 0 || unit != "kB" || n > 1<<40 {
				return Status{}, fmt.Errorf("proc status: %s %q is not a size in kB", key, clip(val))
			}
			if key == "VmRSS" {
				s.RSS = n << 10
			} else {
				s.HWM = n << 10
			}
		case "PPid":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return Status{}, fmt.Errorf("proc status: PPid %q is not a process id", clip(val))
			}
			s.PPid, sawPPid = n, true
		}
	}
	if !sawPPid {
		return Status{}, errors.New("proc status: no PPid line")
	}
	return s, nil
}

// ParseStat parses the one line of /proc/PID/stat. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func ParseStat(text string) (Stat, error) {
	i := strings.LastIndexByte(text, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("proc stat: no ')' closing the command name in %q", clip(text))
	}
	f := strings.Fields(text[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("proc stat: %d fields after the command name, want at least 15", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil || ppid < 0 {
		return Stat{}, fmt.Errorf("proc stat: ppid %q is not a process id", clip(f[1]))
	}
	var ticks int64
	for _, v := range f[11:15] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1<<50 {
			return Stat{}, fmt.Errorf("proc stat: CPU time %q is not a tick count", clip(v))
		}
		ticks += n
	}
	return Stat{PPid: ppid, CPU: time.Duration(ticks) * time.Second / userHZ}, nil
}

// ReadStatus reads /proc/PID/status.
func ReadStatus(pid int) (Status, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Status{}, fmt.Errorf("read status of process %d: %w", pid, err)
	}
	return ParseStatus(string(b))
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, fmt.Errorf("read stat of process %d: %w", pid, err)
	}
	return ParseStat(string(b))
}

// Tree returns root and its live descendants, root first. Processes that
// exit while it scans are left out.
func Tree(root int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := ReadStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		children[st.PPid] = append(children[st.PPid], pid)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", root)); err != nil {
		return nil, fmt.Errorf("process %d: %w", root, err)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// TreeCPU is the CPU time of root's tree (see the package doc).
func TreeCPU(root int) (time.Duration, error) {
	pids, err := Tree(root)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, p := range pids {
		st, err := ReadStat(p)
		if err != nil {
			continue
		}
		sum += st.CPU
	}
	return sum, nil
}

// TreeMemory returns the summed VmRSS and VmHWM of root's live tree.
func TreeMemory(root int) (rss, hwm int64, err error) {
	pids, err := Tree(root)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range pids {
		st, err := ReadStatus(p)
		if err != nil {
			continue
		}
		rss += st.RSS
		hwm += st.HWM
	}
	return rss, hwm, nil
}

// ResetPeak resets VmHWM of every process of root's tree to its current
// RSS (clear_refs "5", Linux 4.0+).
func ResetPeak(root int) error {
	pids, err := Tree(root)
	if err != nil {
		return err
	}
	for _, p := range pids {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p), []byte("5"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("reset peak RSS of process %d: %w", p, err)
		}
	}
	return nil
}

// Sampler sums VmRSS over a process tree every interval until Stop.
type Sampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex // protects peak
	peak   int64
}

// Sample starts sampling root's tree every interval.
func Sample(root int, interval time.Duration) *Sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if rss, _, err := TreeMemory(root); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, rss)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the largest summed RSS seen, in bytes.
func (s *Sampler) Stop() int64 {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
