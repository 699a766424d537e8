package delivery

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
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
