package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serveUntilUp runs `pkgswarm serve args...` in-process and returns once
// addr answers the node endpoint, with a stop function.
func serveUntilUp(t *testing.T, addr string, args ...string) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- opApp(io.Discard, io.Discard).RunContext(ctx, append([]string{"pkgswarm", "serve"}, args...))
	}()
	cl := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := cl.Get("http://" + addr + "/_pkgswarm/v1/node")
		if err == nil {
			var node struct{ ID string }
			json.NewDecoder(resp.Body).Decode(&node)
			resp.Body.Close()
			if node.ID != "" {
				break
			}
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve exited before answering on %s: %v", addr, err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not answer on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("serve did not stop within 30 s of its context ending")
		}
	}
}

// Every serve setting is a flag, a PKGSWARM_ variable and a config-file key,
// and a flag wins over the environment, which wins over the file.
func TestServeSettingsFromFileEnvAndFlags(t *testing.T) {
	dir := t.TempDir()
	filePort, envPort, flagPort := freePort(t), freePort(t), freePort(t)
	conf := filepath.Join(dir, "pkgswarm.toml")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`listen = "127.0.0.1:%d"
data-dir = %q
mdns = false
swarm = "off"
system-keyrings = false
log-level = "warn"
`, filePort, filepath.Join(dir, "cache"))), 0o644)
	if err != nil {
		t.Fatal(err)
	}

	// The file alone.
	stop := serveUntilUp(t, fmt.Sprintf("127.0.0.1:%d", filePort), "--config", conf)
	if err := stop(); err != nil {
		t.Fatalf("serve on its config file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "blobs")); err != nil {
		t.Fatalf("data-dir from the config file not used: %v", err)
	}

	// The environment over the file.
	t.Setenv("PKGSWARM_LISTEN", fmt.Sprintf("127.0.0.1:%d", envPort))
	stop = serveUntilUp(t, fmt.Sprintf("127.0.0.1:%d", envPort), "--config", conf)
	if err := stop(); err != nil {
		t.Fatalf("serve with PKGSWARM_LISTEN: %v", err)
	}

	// A flag over both.
	stop = serveUntilUp(t, fmt.Sprintf("127.0.0.1:%d", flagPort), "--config", conf, "--listen", fmt.Sprintf("127.0.0.1:%d", flagPort))
	if err := stop(); err != nil {
		t.Fatalf("serve with --listen: %v", err)
	}
}

func TestServeRefusesBadSettings(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error
	}{
		{"cache size", []string{"--cache-size", "lots"}, "--cache-size"},
		// Issue 10, item 2: a bare number is bytes; 10 bytes cannot hold one
		// index. Refused, naming the minimum and the unit to write.
		{"cache size without a unit", []string{"--cache-size", "10"}, "--cache-size 10 is 10 bytes"},
		{"cache size too small", []string{"--cache-size", "1M"}, "at least 64 MiB"},
		{"ports", []string{"--allow-ports", "80,http"}, "--allow-ports"},
		{"clients", []string{"--allow-clients", "10.0.0.0/33"}, "--allow-clients"},
		{"mirror", []string{"--mirror", "nonsense"}, "PREFIX=ALT"},
		{"swarm mode", []string{"--swarm", "everywhere"}, "want off, lan or public"},
		{"log level", []string{"--log-level", "loud"}, "--log-level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"pkgswarm", "serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, tc.name),
				"--mdns=false", "--system-keyrings=false", "--swarm-listen", "127.0.0.1:0"}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := opApp(io.Discard, io.Discard).RunContext(ctx, args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve %v: %v, want an error naming %q", tc.args, err, tc.want)
			}
		})
	}
}
