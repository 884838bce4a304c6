// Package procstat measures the memory and CPU time of a process tree from
// /proc: the servers under benchmark fork workers (nginx) or a process per
// connection (approx under socat), so a tree, not one process, is what is
// measured.
//
// CPU time of a tree is the sum, over its live processes, of user + system
// time of the process and of its reaped children (utime, stime, cutime,
// cstime): a process that exited is counted once, in its parent's cutime,
// and a live one only for itself. Peak memory is taken two ways: VmHWM (the
// kernel's resident high-water mark, which ResetPeak resets through
// clear_refs) of each live process, and a Sampler that sums VmRSS over the
// tree at a fixed interval, which also sees short-lived processes.
//
// Linux only. Times assume USER_HZ = 100, which every Linux architecture
// the project builds for exports to user space.
package procstat
