package mta

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"mailgate/config"
	"mailgate/delivery"
	"mailgate/dnstest"
)

// `system dns` wins over resolv.conf (none set: the resolver's own); the
// override of a test run wins over both.
func TestDNSServers(t *testing.T) {
	c := config.New()
	m := &MTA{}
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

// setCache applies system dns cache, cache-min-ttl and truncate-handling
// to the resolver MX and reverse lookups go through.
func TestResolverFollowsSystemDNS(t *testing.T) {
	s := dnstest.Start(t)
	s.SetTTL(0)
	for i := 1; i <= 120; i++ {
		s.AddA("big.test", fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))
	}
	s.AddAAAA("big.test", "2001:db8::1")
	r := delivery.NewResolver([]string{s.Addr()})
	c := config.New()
	ctx := context.Background()
	lookups := func() (int, int) {
		t.Helper()
		n := s.Queries()
		addrs, err := r.LookupHost(ctx, "big.test")
		if err != nil {
			t.Fatal(err)
		}
		r.LookupHost(ctx, "big.test")
		return s.Queries() - n, len(addrs)
	}
	// Factory: answers kept 300 s at least (TTL 0 here), a truncated one
	// asked again over TCP: A over UDP and TCP, AAAA, then nothing.
	setCache(r, c)
	if q, n := lookups(); q != 3 || n != 121 {
		t.Fatalf("factory: %d queries, %d addresses", q, n)
	}
	c.System.DNS.Cache, c.System.DNS.TruncateHandling = false, "disable"
	setCache(r, c)
	if q, n := lookups(); q != 4 || n >= 121 {
		t.Fatalf("cache disable, truncate-handling disable: %d queries, %d addresses", q, n)
	}
}
