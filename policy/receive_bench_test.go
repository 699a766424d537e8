package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// The receive policy runs once per RCPT: these measure it with the
// factory rules (protected domains only) and with a longer rule list that
// an administrator might build.

func BenchmarkReceiveProtectedDomain(b *testing.B) {
	c := cfgWith(b, domains)
	s := Session{ClientIP: ip4}
	b.ReportAllocs()
	for b.Loop() {
		if d := Receive(c, s, "sender@outside.example", "user@example.com"); !d.Accept {
			b.Fatal(d.Reply())
		}
	}
}

// BenchmarkReceive20Rules: 20 enabled rules with wildcard, address and
// regular expression conditions; the message matches only the last one.
func BenchmarkReceive20Rules(b *testing.B) {
	var text strings.Builder
	text.WriteString(domains)
	text.WriteString("config policy access-control receive\n")
	for i := 1; i < 20; i++ {
		fmt.Fprintf(&text, "edit %d\nset sender-pattern *@partner%d.example\nset recipient-pattern *@example.com\n", i, i)
		if i%4 == 0 {
			fmt.Fprintf(&text, "set sender-pattern-type regexp\nset sender-pattern ^[a-z]+@partner%d\\.example$\n", i)
		}
		if i%3 == 0 {
			fmt.Fprintf(&text, "set sender-ip-mask 198.51.100.%d/32\n", i)
		}
		text.WriteString("set action relay\nnext\n")
	}
	text.WriteString("edit 20\nset sender-ip-mask 203.0.113.0/24\nset recipient-pattern *@example.com\nset action receive\nnext\nend\n")
	c := cfgWith(b, text.String())
	s := Session{ClientIP: ip4, ReverseDNS: "mx.outside.example"}
	b.ReportAllocs()
	for b.Loop() {
		if d := Receive(c, s, "sender@outside.example", "user@example.com"); !d.Accept || d.RuleID != 20 {
			b.Fatalf("rule %d: %s", d.RuleID, d.Reply())
		}
	}
}

func BenchmarkMatchWildcard(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !MatchWildcard("*@*.Example.COM", "someone.with.a.long.name@mail.sub.example.com") {
			b.Fatal("no match")
		}
	}
}

func BenchmarkOfferSTARTTLS(b *testing.B) {
	c := cfgWith(b, domains)
	s := Session{ClientIP: netip.MustParseAddr("127.0.0.1")}
	b.ReportAllocs()
	for b.Loop() {
		if !OfferSTARTTLS(c, s) {
			b.Fatal("not offered")
		}
	}
}
