package swarm

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkFetch compares a swarm fetch (DHT lookup, metainfo GET, peer
// handshake, transfer, SHA-256 check) from one holder on loopback with one
// plain HTTP GET of the same file, to choose DefaultMinSize:
//
//	go test -run '^$' -bench Fetch ./swarm/
func BenchmarkFetch(b *testing.B) {
	blobs := newDirBlobs(b)
	holder := newNode(b, blobs)
	fetcher := newNode(b, newDirBlobs(b), withBootstrap(holder.DHTAddr()))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(filepath.Join(blobs.dir, filepath.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, _ := f.Stat()
		http.ServeContent(w, r, "", fi.ModTime(), f)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	for _, size := range []int{64 << 10, 256 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20} {
		data := randomBytes(size, uint64(size))
		digest := blobs.put(b, data, "")
		if err := holder.Seed(digest, int64(size)); err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("%dKiB", size>>10)
		b.Run(name+"/swarm", func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				got, err := fetchAll(context.Background(), fetcher, digest, int64(size))
				if err != nil || len(got) != size {
					b.Fatalf("swarm fetch: %d bytes, %v", len(got), err)
				}
			}
		})
		b.Run(name+"/http", func(b *testing.B) {
			b.SetBytes(int64(size))
			url := "http://" + ln.Addr().String() + "/" + digest
			for i := 0; i < b.N; i++ {
				resp, err := http.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != int64(size) {
					b.Fatalf("http get: %d bytes, %v", n, err)
				}
			}
		})
	}
}
