package dnstest

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ask(t *testing.T, s *Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}

func TestServer(t *testing.T) {
	s := Start(t)
	s.AddMX("example.test", 20, "mx2.example.test")
	s.AddMX("example.test", 10, "MX1.example.test.")
	s.AddA("mx1.example.test", "127.0.0.2")
	s.AddA("MX1.example.test", "127.0.0.2") // the same record again: still one
	s.AddMX("example.test", 20, "mx2.example.test")
	s.AddAAAA("mx1.example.test", "::1")
	s.AddNullMX("nomail.test")
	s.AddPTR("127.0.0.2", "mx1.example.test")
	s.AddCNAME("alias.example.test", "mx1.example.test")
	s.AddTXT("example.test", "v=spf1 -all")
	s.SetServFail("broken.test")

	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, s, network, "Example.TEST", dns.TypeMX)
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 2 {
			t.Fatalf("%s MX: %v", network, r)
		}
		if mx := r.Answer[1].(*dns.MX); mx.Mx != "mx1.example.test." || mx.Preference != 10 {
			t.Fatalf("MX %v", mx)
		}
	}
	if r := ask(t, s, "udp", "mx1.example.test", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.2" {
		t.Fatalf("A: %v", r)
	}
	if r := ask(t, s, "udp", "mx1.example.test", dns.TypeAAAA); len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "::1" {
		t.Fatalf("AAAA: %v", r)
	}
	if r := ask(t, s, "udp", "nomail.test", dns.TypeMX); len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "." {
		t.Fatalf("null MX: %v", r)
	}
	if r := ask(t, s, "udp", "2.0.0.127.in-addr.arpa", dns.TypePTR); len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "mx1.example.test." {
		t.Fatalf("PTR: %v", r)
	}
	if r := ask(t, s, "udp", "alias.example.test", dns.TypeA); len(r.Answer) != 2 || r.Answer[1].(*dns.A).A.String() != "127.0.0.2" {
		t.Fatalf("CNAME: %v", r)
	}
	if r := ask(t, s, "udp", "unknown.test", dns.TypeA); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Fatalf("NXDOMAIN: %v", r)
	}
	// Known name, other type: NODATA; a parent of known names exists too.
	for _, name := range []string{"example.test", "test"} {
		if r := ask(t, s, "udp", name, dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
			t.Fatalf("NODATA %s: %v", name, r)
		}
	}
	if r := ask(t, s, "udp", "broken.test", dns.TypeMX); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("SERVFAIL: %v", r)
	}
	s.Remove("broken.test")
	if r := ask(t, s, "udp", "broken.test", dns.TypeMX); r.Rcode != dns.RcodeNameError {
		t.Fatalf("after Remove: %v", r)
	}

	s.SetDrop("slow.test")
	m := new(dns.Msg)
	m.SetQuestion("slow.test.", dns.TypeA)
	if _, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(m, s.Addr()); err == nil {
		t.Fatal("a dropped question was answered")
	}
	if s.Queries() < 10 {
		t.Fatalf("Queries() = %d", s.Queries())
	}
}

func TestTTL(t *testing.T) {
	s := Start(t)
	s.AddA("zero.test", "127.0.0.1")
	s.SetTTL(300)
	s.AddA("cached.test", "127.0.0.1")
	if r := ask(t, s, "udp", "zero.test", dns.TypeA); r.Answer[0].Header().Ttl != 0 {
		t.Fatalf("default TTL %d", r.Answer[0].Header().Ttl)
	}
	if r := ask(t, s, "udp", "cached.test", dns.TypeA); r.Answer[0].Header().Ttl != 300 {
		t.Fatalf("TTL %d", r.Answer[0].Header().Ttl)
	}
}
