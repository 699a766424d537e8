package delivery

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestResolvConfServers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	text := "# written by the DHCP client\nsearch corp.example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2 timeout:1\nnameserver fe80::1%eth0\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.53:53", "[2001:db8::53]:53", "[fe80::1%eth0]:53"}
	if got := ResolvConfServers(path); !slices.Equal(got, want) {
		t.Fatalf("ResolvConfServers = %v, want %v", got, want)
	}
	if got := ResolvConfServers(filepath.Join(dir, "missing")); got != nil {
		t.Fatalf("missing file: %v", got)
	}
}

// With no servers set, the resolver takes resolv.conf's and reads the file
// again when it changes (a DHCP client writing it after mail started).
func TestResolverFollowsResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	r := NewResolver(nil)
	clock := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return clock }
	r.SetResolvConf(path) // not there yet
	if got := r.Servers(); !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Fatalf("before the file: %v", got)
	}
	write := func(text string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	write("nameserver 192.0.2.53\n", clock.Add(time.Second))
	if got := r.Servers(); !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Fatalf("looked again within %v: %v", resolvConfCheck, got)
	}
	clock = clock.Add(resolvConfCheck)
	if got := r.Servers(); !slices.Equal(got, []string{"192.0.2.53:53"}) {
		t.Fatalf("after the file appeared: %v", got)
	}
	write("nameserver 198.51.100.53\n", clock.Add(time.Minute))
	clock = clock.Add(resolvConfCheck)
	if got := r.Servers(); !slices.Equal(got, []string{"198.51.100.53:53"}) {
		t.Fatalf("after a change: %v", got)
	}
	// Servers set explicitly are kept whatever the file says.
	r.SetServers([]string{"192.0.2.1"})
	write("nameserver 203.0.113.53\n", clock.Add(2*time.Minute))
	clock = clock.Add(resolvConfCheck)
	if got := r.Servers(); !slices.Equal(got, []string{"192.0.2.1:53"}) {
		t.Fatalf("explicit servers: %v", got)
	}
	// Back to none: the file's, as it is now.
	r.SetServers(nil)
	if got := r.Servers(); !slices.Equal(got, []string{"203.0.113.53:53"}) {
		t.Fatalf("none set again: %v", got)
	}
}
