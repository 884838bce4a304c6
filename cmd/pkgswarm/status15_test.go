package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var snakeCaseKey = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// checkStatusJSON walks a decoded status document: no null, no zero date,
// snake_case keys except in maps keyed by data (sources, results, TXT
// keys, addresses).
func checkStatusJSON(t *testing.T, path string, v any) {
	t.Helper()
	switch x := v.(type) {
	case nil:
		t.Errorf("%s is null", path)
	case string:
		if strings.HasPrefix(x, "0001-01-01") {
			t.Errorf("%s is the zero date %s", path, x)
		}
	case []any:
		for i, e := range x {
			checkStatusJSON(t, fmt.Sprintf("%s[%d]", path, i), e)
		}
	case map[string]any:
		dataKeys := regexp.MustCompile(`\.(served_bytes|requests|txt|peers\[\d+\]\.txt|fetches\[\d+\]\.peers)$`).MatchString(path)
		for k, e := range x {
			if !dataKeys && !snakeCaseKey.MatchString(k) {
				t.Errorf("%s has key %q, not snake_case", path, k)
			}
			checkStatusJSON(t, path+"."+k, e)
		}
	}
}

// Issue 15 item 8: the status document is versioned, snake_case, has no
// zero dates and no nulls, with the swarm's stats and a peer that was
// never seen.
func TestStatusJSONSchema(t *testing.T) {
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"id":"feedfacefeedface99","version":"test"}`)
	}))
	defer peer.Close()
	s := startServe(t, runOpts{}, "--data-dir", filepath.Join(t.TempDir(), "data"), "--swarm", "lan",
		"--swarm-listen", "127.0.0.1:0", "--peer", peer.URL)
	// The static peer joins the table once its health check answered.
	peerCount := func() int {
		resp, err := http.Get("http://" + s.addr + "/_pkgswarm/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct{ Peers []any }
		json.NewDecoder(resp.Body).Decode(&doc)
		return len(doc.Peers)
	}
	for deadline := time.Now().Add(20 * time.Second); peerCount() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the static peer %s never joined the peer table", peer.URL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, errOut, code := runPkgswarm(t, runOpts{}, "status", "--json", "--server", "http://"+s.addr)
	if code != 0 {
		t.Fatalf("status --json: exit %d\n%s", code, errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if v, ok := doc["version"].(float64); !ok || v != 1 {
		t.Errorf(`"version" is %v, want the schema version 1`, doc["version"])
	}
	if v, ok := doc["pkgswarm_version"].(string); !ok || v == "" {
		t.Errorf(`"pkgswarm_version" is %v`, doc["pkgswarm_version"])
	}
	if extra, _ := doc["extra"].(map[string]any); extra == nil || extra["swarm"] == nil {
		t.Errorf("no extra.swarm in\n%s", out)
	}
	if peers, _ := doc["peers"].([]any); len(peers) != 1 {
		t.Errorf("peers: %v, want the one --peer", doc["peers"])
	}
	checkStatusJSON(t, "status", doc)
	if t.Failed() {
		t.Logf("the document:\n%s", out)
	}

	// The text form reads the same document.
	text, _, code := runPkgswarm(t, runOpts{}, "status", "--server", "http://"+s.addr)
	if code != 0 || !strings.Contains(text, "version "+doc["pkgswarm_version"].(string)) {
		t.Errorf("status:\n%s", text)
	}
	// And peers --json is snake_case too.
	pj, _, _ := runPkgswarm(t, runOpts{}, "peers", "--json", "--server", "http://"+s.addr)
	var peers any
	json.Unmarshal([]byte(pj), &peers)
	checkStatusJSON(t, "peers", peers)
}

// Issue 15 item 8: magnet --json leaves & alone (an older node's answer
// escapes it), and a magnet of a file or URL carries its name as dn=.
func TestMagnetJSONAndName(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hello_1.0_all.deb")
	data := []byte("a package")
	os.WriteFile(file, data, 0o644)
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_pkgswarm/v1/magnet/sha256/"+d {
			http.NotFound(w, r)
			return
		}
		// As json.Encoder writes it by default: & as \u0026.
		io.WriteString(w, `{"magnet":"magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567\u0026dn=`+d+`\u0026xl=9","sha256":"`+d+`","size":9}`+"\n")
	}))
	defer node.Close()
	o := runOpts{timeout: 30 * time.Second}
	out, errOut, code := runPkgswarm(t, o, "magnet", "--json", "--server", node.URL, file)
	if code != 0 {
		t.Fatalf("magnet --json: exit %d\n%s", code, errOut)
	}
	if strings.Contains(out, `\u0026`) || !strings.Contains(out, "&dn=hello_1.0_all.deb&xl=9") {
		t.Errorf("magnet --json FILE printed %s", out)
	}
	out, _, _ = runPkgswarm(t, o, "magnet", "--server", node.URL, d)
	if !strings.Contains(out, "&dn="+d) {
		t.Errorf("magnet SHA256 printed %s", out)
	}
}
