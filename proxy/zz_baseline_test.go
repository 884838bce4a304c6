package proxy_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func BenchmarkZZBaselineSmall(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 13<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}}
	buf := make([]byte, 256<<10)
	for b.Loop() {
		benchGet(b, c, srv.URL+"/x", int64(len(data)), buf)
	}
}
