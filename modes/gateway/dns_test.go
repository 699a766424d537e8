package gateway

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"mailgate/config"
)

func TestResolvConfServers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	text := "# written by the DHCP client\nsearch corp.example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2 timeout:1\nnameserver fe80::1%eth0\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.53:53", "[2001:db8::53]:53", "[fe80::1%eth0]:53"}
	if got := resolvConfServers(path); !slices.Equal(got, want) {
		t.Fatalf("resolvConfServers = %v, want %v", got, want)
	}
	if got := resolvConfServers(filepath.Join(dir, "missing")); got != nil {
		t.Fatalf("missing file: %v", got)
	}
}

// `system dns` wins over resolv.conf; the override of a test run wins
// over both.
func TestDNSServers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver 198.51.100.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := config.New()
	m := &Mode{opt: Options{ResolvConf: path}}
	if got := m.dnsServers(c); !slices.Equal(got, []string{"198.51.100.1:53"}) {
		t.Fatalf("no system dns: %v", got)
	}
	c.System.DNS.Primary = "192.0.2.1"
	if got := m.dnsServers(c); !slices.Equal(got, []string{"192.0.2.1:53"}) {
		t.Fatalf("primary: %v", got)
	}
	c.System.DNS.Secondary = "2001:db8::2"
	if got := m.dnsServers(c); !slices.Equal(got, []string{"192.0.2.1:53", "[2001:db8::2]:53"}) {
		t.Fatalf("primary and secondary: %v", got)
	}
	m.opt.DNSServers = []string{"127.0.0.1:5353"}
	if got := m.dnsServers(c); !slices.Equal(got, []string{"127.0.0.1:5353"}) {
		t.Fatalf("override: %v", got)
	}
}
