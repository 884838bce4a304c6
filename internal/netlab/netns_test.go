package netlab

import (
	"net"
	"slices"
	"strings"
	"testing"
)

// TestInNetns checks that InNetns runs in the namespace and returns the
// thread to the test's namespace.
func TestInNetns(t *testing.T) {
	lab := New(t, "innetns")
	lan := lab.AddLAN("lan", "10.78.0.0/24")
	h := lab.AddHost("h", lan)
	names := func() []string {
		ifs, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range ifs {
			out = append(out, i.Name)
		}
		slices.Sort(out)
		return out
	}
	var inside []string
	if err := InNetns(h.Namespace(), func() error { inside = names(); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"eth0", "lo"}; !slices.Equal(inside, want) {
		t.Errorf("interfaces inside %s: %v; want %v", h.Namespace(), inside, want)
	}
	// Every thread the test uses afterwards is back home: no run of names
	// here may see only the lab's interfaces.
	for range 20 {
		if got := names(); slices.Equal(got, inside) {
			t.Fatalf("a thread stayed in the lab namespace: interfaces %v", got)
		}
	}
	if err := InNetns("no-such-namespace", func() error { return nil }); err == nil || !strings.Contains(err.Error(), "no-such-namespace") {
		t.Errorf("InNetns on a missing namespace: %v; want an error naming it", err)
	}
}
