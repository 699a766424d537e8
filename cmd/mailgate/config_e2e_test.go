package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailgate/dnstest"
)

// Tests of settings that apply to the running appliance, without a
// restart.

// startDNS53 starts a test DNS server on port 53 of a loopback address of
// its own (127.53.x.y): `system dns` takes an address, and the appliance
// asks it on port 53. Binding port 53 needs root, as Postfix does.
func startDNS53(t *testing.T) *dnstest.Server {
	t.Helper()
	var last error
	for range 20 {
		addr := fmt.Sprintf("127.53.%d.%d:53", 1+rand.IntN(250), 1+rand.IntN(250))
		s, err := dnstest.ListenAt(addr)
		if err == nil {
			t.Cleanup(s.Close)
			return s
		}
		if errors.Is(err, syscall.EACCES) {
			t.Fatalf("a DNS server on port 53 needs root (or CAP_NET_BIND_SERVICE): %v", err)
		}
		last = err
	}
	t.Fatalf("no loopback address free on port 53: %v", last)
	return nil
}

// TestGatewaySystemDNSAtRuntime runs the appliance without the
// -dns-server override, so MX lookups use `system dns` (at start: none
// set, so resolv.conf). Setting the primary server, then changing it,
// takes effect for the next delivery, without a restart.
func TestGatewaySystemDNSAtRuntime(t *testing.T) {
	one, two := startDNS53(t), startDNS53(t)
	one.AddMX("first.example", 10, "mx.first.example")
	one.AddA("mx.first.example", "127.0.0.1")
	two.AddMX("second.example", 10, "mx.second.example")
	two.AddA("mx.second.example", "127.0.0.1")
	g := startGateway(t, "-dns-server=") // no override: the configuration decides

	submit := func(rcpt, subject string) {
		t.Helper()
		out, code := swaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", g.msa), "--tls", "--from", "alice@example.com",
			"--to", rcpt, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "Alice#Submit2026",
			"--header", "Subject: "+subject)
		if code != 0 || !strings.Contains(out, "250 2.0.0") {
			t.Fatalf("submission to %s refused: %d\n%s", rcpt, code, out)
		}
	}
	host := func(s *dnstest.Server) string { h, _, _ := net.SplitHostPort(s.Addr()); return h }
	// The message itself, not the bounce (which quotes its headers) that
	// a failed lookup leads to.
	delivered := func(subject string) error {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			for _, m := range g.sink.Messages() {
				if strings.Contains(m, "Subject: "+subject) && strings.Contains(m, "Return-Path: <alice@example.com>") {
					return nil
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%q not delivered within 30s", subject)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	g.configure("config system dns", "set primary "+host(one), "end")
	submit("friend@first.example", "dns one")
	if err := delivered("dns one"); err != nil {
		t.Fatalf("not delivered by the MX of the configured DNS server: %v\nqueue:\n%s", err, g.cli("diagnose mailqueue list"))
	}
	if one.Queries() == 0 {
		t.Fatal("the configured DNS server was never asked")
	}

	// The first server knows nothing of second.example (NXDOMAIN: the
	// message would bounce); the second one does.
	asked := one.Queries()
	g.configure("config system dns", "set primary "+host(two), "end")
	submit("friend@second.example", "dns two")
	if err := delivered("dns two"); err != nil {
		t.Fatalf("not delivered after the DNS server changed: %v\nqueue:\n%s\nhistory:\n%s", err,
			g.cli("diagnose mailqueue list"), g.cli("diagnose log history 10"))
	}
	if two.Queries() == 0 || one.Queries() != asked {
		t.Fatalf("queries after the change: old server %d (was %d), new server %d", one.Queries(), asked, two.Queries())
	}
	if ev := g.cli("diagnose log event 100"); !strings.Contains(ev, "DNS servers for MX and reverse lookups: "+two.Addr()) {
		t.Fatalf("event log lacks the DNS change:\n%s", ev)
	}
}
