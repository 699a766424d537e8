package gateway

import (
	"slices"
	"testing"

	"mailgate/config"
)

// `system dns` wins over resolv.conf (none set: the resolver's own); the
// override of a test run wins over both.
func TestDNSServers(t *testing.T) {
	c := config.New()
	m := &Mode{}
	if got := m.dnsServers(c); got != nil {
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
