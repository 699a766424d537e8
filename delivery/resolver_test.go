package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"mailgate/dnstest"
)

func TestResolver(t *testing.T) {
	s := dnstest.Start(t)
	s.AddMX("example.test", 20, "mx-c.example.test")
	s.AddMX("example.test", 10, "mx-a.example.test")
	s.AddMX("example.test", 10, "mx-b.example.test")
	s.AddA("mx-a.example.test", "127.0.0.2")
	s.AddA("mx-a.example.test", "127.0.0.3")
	s.AddAAAA("mx-a.example.test", "::1")
	s.AddTXT("nomx.test", "x")
	s.AddNullMX("nullmx.test")
	s.AddPTR("127.0.0.2", "mx-a.example.test")
	s.SetServFail("servfail.test")
	r := NewResolver([]string{s.Addr()})
	ctx := context.Background()

	seen := map[string]bool{}
	for range 40 {
		mxs, err := r.LookupMX(ctx, "example.test")
		if err != nil || len(mxs) != 3 || mxs[2].Host != "mx-c.example.test" || mxs[0].Pref != 10 {
			t.Fatalf("LookupMX: %v %v", mxs, err)
		}
		seen[mxs[0].Host] = true
	}
	if !seen["mx-a.example.test"] || !seen["mx-b.example.test"] {
		t.Errorf("equal preferences are not shuffled: %v", seen)
	}
	if mxs, err := r.LookupMX(ctx, "nomx.test"); err != nil || len(mxs) != 0 {
		t.Errorf("no MX: %v %v", mxs, err)
	}
	if mxs, err := r.LookupMX(ctx, "nullmx.test"); err != nil || len(mxs) != 1 || mxs[0].Host != "." {
		t.Errorf("null MX: %v %v", mxs, err)
	}
	var de *net.DNSError
	if _, err := r.LookupMX(ctx, "missing.test"); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("NXDOMAIN: %v", err)
	}
	if _, err := r.LookupMX(ctx, "servfail.test"); !errors.As(err, &de) || de.IsNotFound || !de.IsTemporary {
		t.Errorf("SERVFAIL: %#v", err)
	}

	addrs, err := r.LookupHost(ctx, "mx-a.example.test")
	if err != nil || len(addrs) != 3 || addrs[0] != netip.MustParseAddr("127.0.0.2") || addrs[2] != netip.MustParseAddr("::1") {
		t.Errorf("LookupHost: %v %v", addrs, err)
	}
	if addrs, err := r.LookupHost(ctx, "192.0.2.7"); err != nil || len(addrs) != 1 || addrs[0].String() != "192.0.2.7" {
		t.Errorf("literal: %v %v", addrs, err)
	}
	for _, name := range []string{"missing.test", "nomx.test"} {
		if _, err := r.LookupHost(ctx, name); !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("LookupHost(%s): %v", name, err)
		}
	}
	if name, err := r.LookupAddr(ctx, netip.MustParseAddr("127.0.0.2")); err != nil || name != "mx-a.example.test" {
		t.Errorf("LookupAddr: %q %v", name, err)
	}
	if _, err := r.LookupAddr(ctx, netip.MustParseAddr("127.0.0.99")); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("LookupAddr without PTR: %v", err)
	}
}

func TestResolverCacheAndTimeout(t *testing.T) {
	s := dnstest.Start(t)
	s.AddA("fresh.test", "127.0.0.2")
	s.SetTTL(60)
	s.AddA("cached.test", "127.0.0.3")
	s.SetDrop("slow.test")
	r := NewResolver([]string{s.Addr()})
	r.Timeout = 100 * time.Millisecond
	ctx := context.Background()

	r.LookupHost(ctx, "cached.test")
	n := s.Queries()
	if addrs, err := r.LookupHost(ctx, "cached.test"); err != nil || len(addrs) != 1 || s.Queries() != n {
		t.Errorf("not answered from the cache: %v %v (%d -> %d queries)", addrs, err, n, s.Queries())
	}
	r.LookupHost(ctx, "fresh.test")
	n = s.Queries()
	r.LookupHost(ctx, "fresh.test")
	if s.Queries() == n {
		t.Error("a TTL 0 answer was cached")
	}

	start := time.Now()
	_, err := r.LookupMX(ctx, "slow.test")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsTimeout || !de.IsTemporary || time.Since(start) > 2*time.Second {
		t.Errorf("timeout: %#v after %v", err, time.Since(start))
	}
}

// cache-min-ttl keeps positive answers at least that long, whatever their
// TTL; negative answers keep their own (short) time; with the cache off
// every lookup asks the server.
func TestResolverCacheSettings(t *testing.T) {
	s := dnstest.Start(t)
	s.SetTTL(0)
	s.AddA("zero.test", "127.0.0.2")
	s.AddAAAA("zero.test", "::2")
	r := NewResolver([]string{s.Addr()})
	ctx := context.Background()
	r.SetCache(true, 300*time.Second)
	r.LookupHost(ctx, "zero.test")
	n := s.Queries()
	if addrs, err := r.LookupHost(ctx, "zero.test"); err != nil || len(addrs) != 2 || s.Queries() != n {
		t.Errorf("TTL 0 answer not kept for cache-min-ttl: %v %v (%d -> %d queries)", addrs, err, n, s.Queries())
	}
	r.LookupHost(ctx, "missing.test")
	n = s.Queries()
	r.LookupHost(ctx, "missing.test")
	if s.Queries() == n {
		t.Error("a negative answer without SOA time was kept for cache-min-ttl")
	}

	r.SetCache(false, 300*time.Second)
	n = s.Queries()
	r.LookupHost(ctx, "zero.test")
	r.LookupHost(ctx, "zero.test")
	if s.Queries() != n+4 {
		t.Errorf("cache off: %d queries for two lookups of A and AAAA", s.Queries()-n)
	}
	r.SetCache(true, 0)
	r.LookupHost(ctx, "zero.test")
	n = s.Queries()
	r.LookupHost(ctx, "zero.test")
	if s.Queries() == n {
		t.Error("cache-min-ttl 0: a TTL 0 answer was cached")
	}
}

// truncate-handling: a truncated UDP answer is asked again over TCP
// (tcp-retry) or used as it is (disable).
func TestResolverTruncateHandling(t *testing.T) {
	s := dnstest.Start(t)
	for i := 1; i <= 120; i++ {
		s.AddA("big.test", fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))
	}
	r := NewResolver([]string{s.Addr()})
	r.SetCache(false, 0)
	ctx := context.Background()
	addrs, err := r.LookupHost(ctx, "big.test")
	if err != nil || len(addrs) != 120 {
		t.Fatalf("tcp-retry: %d addresses, %v", len(addrs), err)
	}
	r.SetTCPRetry(false)
	addrs, err = r.LookupHost(ctx, "big.test")
	if err != nil || len(addrs) == 0 || len(addrs) >= 120 {
		t.Fatalf("disable: %d addresses (the truncated UDP answer), %v", len(addrs), err)
	}
}
