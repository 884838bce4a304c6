package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// delayDev is the tun device Delay makes in a router's namespace.
const delayDev = "dly0"

// delayTable is the routing table that sends what a delaying router
// forwards into its tun device.
const delayTable = "101"

// Delay makes the router h hold every packet it forwards for d before it
// sends it on: a one-way delay of d on each path through h, both directions,
// that leaves rates and shapers (Shape) alone. Two sites whose gateways both
// delay by d are 4d apart in round-trip time; a host behind one of them is
// 2d further from everything beyond it. Packets to and from h itself are not
// delayed.
//
// netem would do this in the kernel, but this kernel lacks it, so the delay
// lives in the test process: h routes every packet that arrives on a lab
// interface into a tun device (policy routing by input interface), the
// process reads it, keeps it for d, and writes it back, and h routes it on
// by its main table. Order is kept. The device and its goroutines end in the
// test's Cleanup, before the lab is removed.
//
// Delay may be called once per router, after every host is added (it reads
// the router's interfaces as they are then).
func (h *Host) Delay(d time.Duration) error {
	if !h.router {
		return fmt.Errorf("netlab: delay on %s: only a router (AddRouter) forwards packets to delay", h.name)
	}
	if d <= 0 || d > 10*time.Second {
		return fmt.Errorf("netlab: delay on %s: %v is not a delay between 0 and 10s", h.name, d)
	}
	var f *os.File
	err := InNetns(h.ns, func() error {
		var err error
		f, err = openTun(delayDev)
		return err
	})
	if err != nil {
		return fmt.Errorf("netlab: delay on %s: %w", h.name, err)
	}
	dl := &delayLine{f: f, d: d, q: make(chan delayed, 4096)}
	h.lab.t.Cleanup(dl.stop)
	cmds := [][]string{{"link", "set", delayDev, "up"}}
	for _, fam := range []string{"-4", "-6"} {
		// What comes back out of the tun goes on by the ordinary routes;
		// everything else that arrives on a lab interface goes into it.
		cmds = append(cmds,
			[]string{fam, "rule", "add", "pref", "100", "iif", delayDev, "lookup", "main"},
			[]string{fam, "route", "add", "default", "dev", delayDev, "table", delayTable})
		for _, lan := range h.lans {
			cmds = append(cmds, []string{fam, "rule", "add", "pref", "101", "iif", h.ifaces[lan], "lookup", delayTable})
		}
	}
	for _, args := range cmds {
		if out, err := exec.Command("ip", append([]string{"-n", h.ns}, args...)...).CombinedOutput(); err != nil {
			dl.stop()
			return fmt.Errorf("netlab: delay on %s: ip %v: %v: %s", h.name, args, err, bytes.TrimSpace(out))
		}
	}
	// The packets the tun hands back arrive on an interface that has no
	// route back to their sender: reverse-path filtering would drop them.
	sysctl := exec.Command("ip", "netns", "exec", h.ns, "sysctl", "-qw",
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf."+delayDev+".rp_filter=0")
	if out, err := sysctl.CombinedOutput(); err != nil {
		dl.stop()
		return fmt.Errorf("netlab: delay on %s: turn off reverse-path filtering: %v: %s", h.name, err, bytes.TrimSpace(out))
	}
	dl.wg.Add(2)
	go dl.read()
	go dl.write()
	return nil
}

// openTun makes a tun device named name in the calling thread's network
// namespace and returns it, non-blocking, for Go's poller. The device goes
// away when the file is closed.
func openTun(name string) (*os.File, error) {
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENOENT) {
		// Minimal systems and some containers have no device node although
		// the kernel has tun: make it, as root may.
		if merr := makeTunNode(); merr != nil {
			return nil, fmt.Errorf("open %s: %w; making it: %v", tunPath, err, merr)
		}
		fd, err = unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s (is the kernel built with CONFIG_TUN?): %w", tunPath, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun device name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make tun device %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// tunPath is the tun clone device (major 10, minor 200).
const tunPath = "/dev/net/tun"

func makeTunNode() error {
	if err := os.MkdirAll("/dev/net", 0o755); err != nil {
		return err
	}
	err := unix.Mknod(tunPath, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 200)))
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// delayLine reads packets from a tun device and writes each back d after it
// was read, in order.
type delayLine struct {
	f    *os.File
	d    time.Duration
	q    chan delayed
	wg   sync.WaitGroup
	once sync.Once
}

type delayed struct {
	pkt []byte
	due time.Time
}

// read queues every packet the device hands over. A full queue (more than
// 4096 packets within d) blocks it, and the device's own queue drops what
// arrives meanwhile, as a router's full buffer would.
func (dl *delayLine) read() {
	defer dl.wg.Done()
	defer close(dl.q)
	buf := make([]byte, 65536)
	for {
		n, err := dl.f.Read(buf)
		if err != nil {
			return // closed by stop, or the namespace went away
		}
		dl.q <- delayed{pkt: bytes.Clone(buf[:n]), due: time.Now().Add(dl.d)}
	}
}

func (dl *delayLine) write() {
	defer dl.wg.Done()
	for p := range dl.q {
		if wait := time.Until(p.due); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := dl.f.Write(p.pkt); err != nil {
			if errors.Is(err, os.ErrClosed) {
				for range dl.q { // let read see its error and end
				}
				return
			}
			continue // a packet the kernel would not take: lost, as on a wire
		}
	}
}

func (dl *delayLine) stop() {
	dl.once.Do(func() {
		dl.f.Close()
		dl.wg.Wait()
	})
}
