package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

func BenchmarkOpenBlob(b *testing.B) {
	s := openTest(b, Options{})
	r := rand.New(rand.NewPCG(1, 1))
	ds := make([]Digest, 1000)
	for i := range ds {
		ds[i] = putBlob(b, s, randBytes(r, 1024))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			f, _, err := s.OpenBlob(ds[i%len(ds)])
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
			i++
		}
	})
}

func expects60k() map[string]Expect {
	m := make(map[string]Expect, 60_000)
	for i := 0; i < 60_000; i++ {
		p := fmt.Sprintf("deb.example.org/debian/pool/main/p/pkg%d/pkg%d_1.%d-1_amd64.deb", i%5000, i, i)
		m[p] = Expect{SHA256: DigestOf([]byte(p)), Size: int64(i * 100), Root: "http://deb.example.org/debian/dists/bookworm/InRelease"}
	}
	return m
}

func BenchmarkPutExpects60k(b *testing.B) {
	s := openTest(b, Options{})
	batch := expects60k()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.PutExpects(batch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetExpect(b *testing.B) {
	s := openTest(b, Options{})
	batch := expects60k()
	if err := s.PutExpects(batch); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 0, len(batch))
	for k := range batch {
		keys = append(keys, k)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := s.GetExpect(keys[i%len(keys)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

const rssChildEnv = "PKGSWARM_STORE_RSS_CHILD_DIR"

// TestRSSChild is the body of BenchmarkStoreRSS's child process: it opens an
// on-disk store, writes 60k expectations (one large Packages file), reads them
// back, commits and reads 1,000 blobs, and prints its memory use: at the peak,
// right after the work, and after the Go runtime returned freed memory.
func TestRSSChild(t *testing.T) {
	dir := os.Getenv(rssChildEnv)
	if dir == "" {
		t.Skip("helper process for BenchmarkStoreRSS")
	}
	s, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	batch := expects60k()
	if err := s.PutExpects(batch); err != nil {
		t.Fatal(err)
	}
	for k := range batch {
		if _, err := s.GetExpect(k); err != nil {
			t.Fatal(err)
		}
	}
	batch = nil
	r := rand.New(rand.NewPCG(2, 2))
	var ds []Digest
	for i := 0; i < 1000; i++ {
		ds = append(ds, putBlob(t, s, randBytes(r, 32<<10)))
	}
	s.Pin("root", ds)
	for _, d := range ds {
		readBlob(t, s, d)
	}
	s.flushAccess()
	runtime.GC()
	after := procStatus(t, "VmRSS")
	debug.FreeOSMemory()
	fmt.Printf("RSS after=%d freed=%d anon=%d hwm=%d\n", after, procStatus(t, "VmRSS"), procStatus(t, "RssAnon"), procStatus(t, "VmHWM"))
	s.Close()
}

// procStatus returns a /proc/self/status field in KiB.
func procStatus(t testing.TB, field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkStoreRSS reports the resident memory of a process that holds an open,
// busy store (measured in a child process so the benchmark harness does not
// count). Run with GOMEMLIMIT set to see the effect of a soft memory limit.
func BenchmarkStoreRSS(b *testing.B) {
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRSSChild$", "-test.v")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+b.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		var after, freed, anon, hwm int64
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "RSS ") {
				fmt.Sscanf(line, "RSS after=%d freed=%d anon=%d hwm=%d", &after, &freed, &anon, &hwm)
			}
		}
		if after == 0 {
			b.Fatalf("child printed no RSS line:\n%s", out)
		}
		b.ReportMetric(float64(hwm)/1024, "MiB-peak-rss")
		b.ReportMetric(float64(after)/1024, "MiB-rss")
		b.ReportMetric(float64(freed)/1024, "MiB-rss-after-free")
		b.ReportMetric(float64(anon)/1024, "MiB-anon-after-free")
	}
}

// BenchmarkFirstCommits commits 180 small blobs (the shape of an apt
// upgrade) into a store just opened, as a new node's first downloads do;
// Open is not timed (BenchmarkOpenNew times it). The store lives in the
// benchmark's temporary directory, so what a file system charges for new
// inodes shows (see makeShards).
func BenchmarkFirstCommits(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	blobs := make([][]byte, 180)
	for i := range blobs {
		blobs[i] = randBytes(r, 8<<10)
	}
	b.ReportAllocs()
	for range b.N {
		b.StopTimer()
		s := openTest(b, Options{InMemoryIndex: true})
		b.StartTimer()
		for _, p := range blobs {
			putBlob(b, s, p)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkOpenNew opens a store in a new directory.
func BenchmarkOpenNew(b *testing.B) {
	for range b.N {
		s := openTest(b, Options{InMemoryIndex: true})
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
