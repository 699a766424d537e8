package policy

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"

	"mailgate/config"
	"mailgate/config/configtest"
)

// cfgWith applies CLI configuration text to the factory configuration.
func cfgWith(t testing.TB, text string) *config.Config {
	t.Helper()
	return configtest.Apply(t, config.Factory(config.FactoryOptions{}), text)
}

const domains = `
config domain
  edit example.com
  next
  edit example.net
  next
end
`

var (
	ip4      = netip.MustParseAddr("203.0.113.9")
	internal = netip.MustParseAddr("192.0.2.7")
	mapped   = netip.MustParseAddr("::ffff:192.0.2.7")
	ip6      = netip.MustParseAddr("2001:db8::25")
	tls13    = &TLSInfo{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Bits: 128}
	tls10    = &TLSInfo{Version: tls.VersionTLS10, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, Bits: 128}
)

type rcase struct {
	name     string
	s        Session
	from, to string
	accept   bool
	discard  bool
	rule     int
	code     int
	enh      string
	class    string
	action   string
}

func runCases(t *testing.T, c *config.Config, cases []rcase) {
	t.Helper()
	for _, tc := range cases {
		d := Receive(c, tc.s, tc.from, tc.to)
		if d.Accept != tc.accept || d.Discard != tc.discard || d.RuleID != tc.rule || d.Code != tc.code ||
			(tc.enh != "" && d.Enhanced != tc.enh) || (tc.class != "" && d.Classifier != tc.class) ||
			(tc.action != "" && d.Action != tc.action) {
			t.Errorf("%s: Receive(%+v, %q, %q) = %+v\nwant accept=%v discard=%v rule=%d code=%d %s class=%q action=%q",
				tc.name, tc.s, tc.from, tc.to, d, tc.accept, tc.discard, tc.rule, tc.code, tc.enh, tc.class, tc.action)
		}
		if d.Accept && (d.Code != 250 || d.Enhanced != "2.1.5" || d.Text != "Ok") {
			t.Errorf("%s: accepted with reply %q", tc.name, d.Reply())
		}
		if !d.Accept && (d.Code < 400 || d.Text == "" || d.Classifier == "") {
			t.Errorf("%s: refusal without a proper reply: %+v", tc.name, d)
		}
	}
}

// TestReceiveDefaults: the factory configuration has no rules; only the
// protected domains are accepted from unauthenticated clients.
func TestReceiveDefaults(t *testing.T) {
	c := cfgWith(t, domains)
	anon := Session{ClientIP: ip4, ReverseDNS: "mx.sender.example"}
	auth := Session{ClientIP: ip4, Authenticated: true}
	runCases(t, c, []rcase{
		{name: "protected", s: anon, from: "a@sender.example", to: "bob@example.com", accept: true, code: 250, class: ClassProtected, action: "default"},
		{name: "protected case and dot", s: anon, from: "a@sender.example", to: "Bob@EXAMPLE.Com.", accept: true, code: 250, class: ClassProtected},
		{name: "second domain", s: anon, from: "a@x.example", to: "c@example.net", accept: true, code: 250},
		{name: "null sender inbound", s: anon, from: "", to: "bob@example.com", accept: true, code: 250},
		{name: "outside domain", s: anon, from: "a@sender.example", to: "victim@elsewhere.example", code: 550, enh: "5.7.1", class: ClassRelayDenied, action: "default"},
		{name: "forged local sender", s: anon, from: "ceo@example.com", to: "victim@elsewhere.example", code: 550, enh: "5.7.1", class: ClassRelayDenied},
		{name: "null sender outbound", s: anon, from: "", to: "victim@elsewhere.example", code: 550, enh: "5.7.1"},
		{name: "subdomain is not protected", s: anon, from: "a@b.example", to: "bob@mail.example.com", code: 550},
		{name: "suffix trick", s: anon, from: "a@b.example", to: "bob@example.com.evil.example", code: 550},
		{name: "prefix trick", s: anon, from: "a@b.example", to: "bob@notexample.com", code: 550},
		{name: "percent hack", s: anon, from: "a@b.example", to: "victim%elsewhere.example@example.com", code: 550, class: ClassRelayDenied},
		{name: "bang path", s: anon, from: "a@b.example", to: "elsewhere.example!victim@example.com", code: 550},
		{name: "quoted at", s: anon, from: "a@b.example", to: "victim@elsewhere.example@example.com", code: 550},
		{name: "no domain", s: anon, from: "a@b.example", to: "postmaster", code: 550},
		{name: "address literal", s: anon, from: "a@b.example", to: "bob@[192.0.2.1]", code: 550},
		{name: "empty recipient", s: anon, from: "a@b.example", to: "", code: 550},
		{name: "ipv6 client", s: Session{ClientIP: ip6}, from: "a@b.example", to: "x@elsewhere.example", code: 550},
		{name: "tls alone does not relay", s: Session{ClientIP: ip4, TLS: tls13}, from: "a@example.com", to: "x@elsewhere.example", code: 550},
		{name: "authenticated relays", s: auth, from: "alice@example.com", to: "x@elsewhere.example", accept: true, code: 250, class: ClassAuthenticated, action: "default"},
		{name: "authenticated inbound", s: auth, from: "alice@example.com", to: "bob@example.com", accept: true, code: 250, class: ClassAuthenticated},
	})
	if Receive(nil, anon, "a@b", "c@d").Accept {
		t.Error("nil configuration must not relay")
	}
}

const rules = domains + `
config profile tls
  edit enc
    set level encrypt
    set action tempfail
  next
  edit encfail
    set level encrypt
    set action fail
  next
  edit plain
    set level none
  next
end
config policy access-control receive
  edit 1
    set status disable
    set action relay
    set comment "disabled open relay: must never apply"
  next
  edit 2
    set sender-pattern "*@spam.example"
    set action reject
  next
  edit 3
    set sender-ip-mask 192.0.2.0/24
    set action relay
  next
  edit 4
    set sender-ip-mask 2001:db8:1::/48
    set action safe-relay
  next
  edit 5
    set reverse-dns-pattern "*.partner.example"
    set tls-profile enc
    set action relay
  next
  edit 6
    set recipient-pattern "trash@example.com"
    set action discard
  next
  edit 7
    set reverse-dns-pattern "*.strict.example"
    set tls-profile encfail
    set action receive
  next
  edit 8
    set sender-pattern-type regexp
    set sender-pattern "^<>$"
    set recipient-pattern "*@example.net"
    set action reject
  next
  edit 9
    set authenticated authenticated
    set sender-pattern "limited@example.com"
    set action receive
  next
  edit 10
    set authenticated not-authenticated
    set sender-pattern "*@safe.example"
    set action safe
  next
  edit 11
    set sender-pattern-type regexp
    set sender-pattern "(unbalanced"
    set action relay
  next
  edit 12
    set reverse-dns-pattern "*.rejected.example"
    set tls-profile enc
    set action reject
  next
end
`

func TestReceiveRules(t *testing.T) {
	c := cfgWith(t, rules)
	anon := Session{ClientIP: ip4, ReverseDNS: "mx.sender.example"}
	partner := Session{ClientIP: ip4, ReverseDNS: "mx1.partner.example"}
	strict := Session{ClientIP: ip4, ReverseDNS: "mx.strict.example"}
	runCases(t, c, []rcase{
		{name: "reject by sender", s: Session{ClientIP: internal}, from: "x@SPAM.example", to: "bob@example.com", code: 550, enh: "5.7.1", rule: 2, class: ClassReject, action: "reject"},
		{name: "internal network relays", s: Session{ClientIP: internal}, from: "a@example.com", to: "x@elsewhere.example", accept: true, code: 250, rule: 3, class: ClassRelay, action: "relay"},
		{name: "mapped address is ipv4", s: Session{ClientIP: mapped}, from: "a@example.com", to: "x@elsewhere.example", accept: true, code: 250, rule: 3},
		{name: "ipv4 rule does not match ipv6", s: Session{ClientIP: ip6}, from: "a@example.com", to: "x@elsewhere.example", code: 550, class: ClassRelayDenied},
		{name: "ipv6 rule", s: Session{ClientIP: netip.MustParseAddr("2001:db8:1:2::9")}, from: "a@example.com", to: "x@elsewhere.example", accept: true, code: 250, rule: 4, class: ClassSafe, action: "safe-relay"},
		{name: "ipv6 rule vs ipv4 client", s: anon, from: "a@example.com", to: "x@elsewhere.example", code: 550},
		{name: "outside the mask", s: Session{ClientIP: netip.MustParseAddr("192.0.3.7")}, from: "a@example.com", to: "x@elsewhere.example", code: 550},
		{name: "tls profile, plain text", s: partner, from: "a@partner.example", to: "x@elsewhere.example", code: 454, enh: "4.7.0", rule: 5, class: ClassTLS, action: "relay"},
		{name: "tls profile met", s: Session{ClientIP: ip4, ReverseDNS: "mx1.partner.example", TLS: tls13}, from: "a@partner.example", to: "x@elsewhere.example", accept: true, code: 250, rule: 5, class: ClassRelay},
		{name: "tls profile, old version", s: Session{ClientIP: ip4, ReverseDNS: "MX1.Partner.Example.", TLS: tls10}, from: "a@partner.example", to: "bob@example.com", code: 454, rule: 5, class: ClassTLS},
		{name: "rdns pattern needs a name", s: Session{ClientIP: ip4}, from: "a@partner.example", to: "x@elsewhere.example", code: 550, class: ClassRelayDenied},
		{name: "discard", s: anon, from: "a@b.example", to: "Trash@example.com", accept: true, discard: true, code: 250, rule: 6, class: ClassDiscard, action: "discard"},
		{name: "tls fail action", s: strict, from: "a@b.example", to: "bob@example.com", code: 550, enh: "5.7.0", rule: 7, class: ClassTLS},
		{name: "receive with tls", s: Session{ClientIP: ip4, ReverseDNS: "mx.strict.example", TLS: tls13}, from: "a@b.example", to: "bob@example.com", accept: true, code: 250, rule: 7, class: ClassReceive, action: "receive"},
		{name: "receive refuses relaying", s: Session{ClientIP: ip4, ReverseDNS: "mx.strict.example", TLS: tls13}, from: "a@b.example", to: "x@elsewhere.example", code: 550, enh: "5.7.1", rule: 7, class: ClassRelayDenied, action: "receive"},
		{name: "regexp null sender", s: anon, from: "", to: "bounce@example.net", code: 550, rule: 8, class: ClassReject},
		{name: "regexp does not match real sender", s: anon, from: "a@b.example", to: "c@example.net", accept: true, code: 250, class: ClassProtected},
		{name: "auth yes, receive only", s: Session{ClientIP: ip4, Authenticated: true}, from: "limited@example.com", to: "x@elsewhere.example", code: 550, rule: 9, class: ClassRelayDenied},
		{name: "auth yes, protected", s: Session{ClientIP: ip4, Authenticated: true}, from: "limited@example.com", to: "bob@example.com", accept: true, code: 250, rule: 9},
		{name: "auth yes rule skipped when anonymous", s: anon, from: "limited@example.com", to: "x@elsewhere.example", code: 550, rule: 0},
		{name: "other authenticated users relay", s: Session{ClientIP: ip4, Authenticated: true}, from: "alice@example.com", to: "x@elsewhere.example", accept: true, code: 250, class: ClassAuthenticated},
		{name: "safe, anonymous", s: anon, from: "a@safe.example", to: "bob@example.com", accept: true, code: 250, rule: 10, class: ClassSafe, action: "safe"},
		{name: "safe refuses relaying", s: anon, from: "a@safe.example", to: "x@elsewhere.example", code: 550, rule: 10, class: ClassRelayDenied},
		{name: "safe percent hack", s: anon, from: "a@safe.example", to: "x%elsewhere.example@example.com", code: 550, rule: 10},
		{name: "auth no rule skipped when authenticated", s: Session{ClientIP: ip4, Authenticated: true}, from: "a@safe.example", to: "x@elsewhere.example", accept: true, code: 250, class: ClassAuthenticated},
		{name: "invalid regexp matches nothing", s: anon, from: "(unbalanced", to: "x@elsewhere.example", code: 550, rule: 0},
		{name: "reject ignores tls profile", s: Session{ClientIP: ip4, ReverseDNS: "a.rejected.example"}, from: "a@b.example", to: "bob@example.com", code: 550, enh: "5.7.1", rule: 12, class: ClassReject},
	})
}

func TestReceiveNewRuleRejects(t *testing.T) {
	// A rule created without settings matches everything and rejects.
	c := cfgWith(t, domains+"config policy access-control receive\n edit 1\n next\nend\n")
	r := c.Policy.AccessControl.Receive[0]
	if r.Action != "reject" || r.SenderIPMask != "0.0.0.0/0" || r.SenderPattern != "*" || r.ReverseDNSPattern != "*" {
		t.Fatalf("defaults of a new rule: %+v", r)
	}
	for _, s := range []Session{{ClientIP: ip4}, {ClientIP: ip6}, {ClientIP: internal, Authenticated: true, TLS: tls13}, {}} {
		for _, from := range []string{"", "a@example.com"} {
			d := Receive(c, s, from, "bob@example.com")
			if d.Accept || d.RuleID != 1 || d.Code != 550 || d.Classifier != ClassReject {
				t.Errorf("%+v from %q: %+v", s, from, d)
			}
		}
	}
}

func TestReceiveFirstMatchWins(t *testing.T) {
	c := cfgWith(t, domains+`
config policy access-control receive
  edit 1
    set recipient-pattern "*@example.com"
    set action discard
  next
  edit 2
    set action relay
  next
end`)
	if d := Receive(c, Session{ClientIP: ip4}, "a@b", "x@example.com"); !d.Discard || d.RuleID != 1 {
		t.Errorf("rule 1 must win: %+v", d)
	}
	if d := Receive(c, Session{ClientIP: ip4}, "a@b", "x@elsewhere.example"); !d.Accept || d.Discard || d.RuleID != 2 {
		t.Errorf("rule 2 must win: %+v", d)
	}
	// Moving rule 2 first changes the outcome.
	c.Policy.AccessControl.Receive[0], c.Policy.AccessControl.Receive[1] = c.Policy.AccessControl.Receive[1], c.Policy.AccessControl.Receive[0]
	if d := Receive(c, Session{ClientIP: ip4}, "a@b", "x@example.com"); d.Discard || d.RuleID != 2 {
		t.Errorf("after the move rule 2 must win: %+v", d)
	}
}

func TestReceiveUnknownActionFailsClosed(t *testing.T) {
	c := cfgWith(t, domains)
	c.Policy.AccessControl.Receive = []config.ReceiveRule{{ID: 4, Status: true, SenderPattern: "*", RecipientPattern: "*",
		SenderIPMask: "0.0.0.0/0", ReverseDNSPattern: "*", Authenticated: "any", Action: "bogus"}}
	if d := Receive(c, Session{ClientIP: ip4}, "a@b", "x@elsewhere.example"); d.Accept || d.Code != 550 || d.RuleID != 4 {
		t.Errorf("unknown action: %+v", d)
	}
	c.Policy.AccessControl.Receive[0].Action, c.Policy.AccessControl.Receive[0].TLSProfile = "relay", "missing"
	if d := Receive(c, Session{ClientIP: ip4, TLS: tls13}, "a@b", "x@elsewhere.example"); d.Accept || d.Code != 454 || d.Classifier != ClassTLS {
		t.Errorf("dangling TLS profile: %+v", d)
	}
}

func TestMatchIPMask(t *testing.T) {
	for _, c := range []struct {
		mask, ip string
		want     bool
	}{
		{"0.0.0.0/0", "203.0.113.1", true},
		{"0.0.0.0/0", "2001:db8::1", true},
		{"::/0", "203.0.113.1", true},
		{"", "2001:db8::1", true},
		{"203.0.113.0/24", "203.0.113.200", true},
		{"203.0.113.0/24", "203.0.114.1", false},
		{"203.0.113.0/24", "::ffff:203.0.113.5", true},
		{"203.0.113.5/32", "203.0.113.5", true},
		{"203.0.113.5", "203.0.113.5", true},
		{"203.0.113.0/24", "2001:db8::1", false},
		{"2001:db8::/32", "2001:db8:ffff::1", true},
		{"2001:db8::/32", "203.0.113.1", false},
		{"::ffff:203.0.113.0/120", "203.0.113.9", true},
		{"::ffff:203.0.113.0/120", "203.0.112.9", false},
		{"::/8", "203.0.113.1", false},
		{"garbage", "203.0.113.1", false},
		{"203.0.113.0/24", "", false},
	} {
		var ip netip.Addr
		if c.ip != "" {
			ip = netip.MustParseAddr(c.ip)
		}
		if got := matchIPMask(c.mask, ip); got != c.want {
			t.Errorf("matchIPMask(%q, %s) = %v", c.mask, c.ip, got)
		}
	}
}

func TestIsProtected(t *testing.T) {
	c := cfgWith(t, domains)
	c.Domain = append(c.Domain, config.Domain{Name: "dotted.example."})
	for _, tc := range []struct {
		d    string
		want bool
	}{
		{"example.com", true}, {"EXAMPLE.COM", true}, {"example.com.", true}, {"dotted.example", true},
		{"sub.example.com", false}, {"com", false}, {"", false}, {".", false}, {"example.co", false},
	} {
		if got := IsProtected(c, tc.d); got != tc.want {
			t.Errorf("IsProtected(%q) = %v", tc.d, got)
		}
	}
	if IsProtected(nil, "example.com") {
		t.Error("nil configuration")
	}
}

func TestOfferSTARTTLS(t *testing.T) {
	c := cfgWith(t, domains+`
config system mailserver
  set starttls-exclude-hosts broken-tls.example legacy
end
config profile tls
  edit plain
    set level none
  next
  edit pref
    set level preferred
  next
end
config policy access-control receive
  edit 1
    set status disable
    set sender-ip-mask 198.51.100.0/24
    set tls-profile pref
    set action relay
  next
  edit 2
    set sender-ip-mask 198.51.100.0/24
    set sender-pattern "nobody@nowhere.example"
    set tls-profile plain
    set action relay
  next
  edit 3
    set reverse-dns-pattern "*.pref.example"
    set tls-profile pref
    set action relay
  next
  edit 4
    set tls-profile plain
    set action relay
  next
end`)
	for _, tc := range []struct {
		s    Session
		want bool
	}{
		{Session{ClientIP: ip4, ReverseDNS: "mx.BROKEN-TLS.example.net"}, false},
		{Session{ClientIP: ip4, ReverseDNS: "legacy-mx.example"}, false},
		// Rule 2 matches by address; its sender pattern is ignored.
		{Session{ClientIP: netip.MustParseAddr("198.51.100.3"), ReverseDNS: "a.pref.example"}, false},
		{Session{ClientIP: ip4, ReverseDNS: "mx.pref.example"}, true},
		// Rule 4 (level none) matches everyone else.
		{Session{ClientIP: ip4, ReverseDNS: "mx.other.example"}, false},
		{Session{ClientIP: ip6}, false},
	} {
		if got := OfferSTARTTLS(c, tc.s); got != tc.want {
			t.Errorf("OfferSTARTTLS(%+v) = %v", tc.s, got)
		}
	}
	plain := cfgWith(t, domains)
	for _, s := range []Session{{ClientIP: ip4}, {ClientIP: ip6, ReverseDNS: "legacy.example"}} {
		if !OfferSTARTTLS(plain, s) {
			t.Errorf("factory configuration must offer STARTTLS to %+v", s)
		}
	}
	plain.System.Mailserver.StartTLSExclude = []string{"", " "}
	if !OfferSTARTTLS(plain, Session{ClientIP: ip4, ReverseDNS: "mx.example"}) {
		t.Error("empty exclusion entries must not exclude everyone")
	}
	if !OfferSTARTTLS(nil, Session{}) {
		t.Error("nil configuration")
	}
}

// FuzzReceiveNoOpenRelay: with no relay-type rule and no authentication,
// whatever the rules' patterns and the session, only recipients of
// protected domains are ever accepted.
func FuzzReceiveNoOpenRelay(f *testing.F) {
	f.Add("a@b.example", "x@elsewhere.example", "*", "*", "203.0.113.0/24", "*", "safe", []byte{203, 0, 113, 9}, "mx.example", true)
	f.Add("", "x%y@example.com", "*", "*@example.com", "0.0.0.0/0", "*", "receive", []byte{1, 2, 3, 4}, "", false)
	f.Add("a@example.com", "EXAMPLE.COM@x", "^.*$", "*", "::/0", "*", "discard", []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "h", true)
	f.Fuzz(func(t *testing.T, from, rcpt, spat, rpat, mask, rdnsPat, action string, ip []byte, rdns string, regexp bool) {
		switch action {
		case "safe", "receive", "reject", "discard":
		default:
			action = "safe"
		}
		c := config.Factory(config.FactoryOptions{})
		c.Domain = []config.Domain{{Name: "example.com"}}
		typ := "default"
		if regexp {
			typ = "regexp"
		}
		c.Policy.AccessControl.Receive = []config.ReceiveRule{{ID: 1, Status: true, SenderPatternType: typ, SenderPattern: spat,
			RecipientPatternType: typ, RecipientPattern: rpat, SenderIPMask: mask, ReverseDNSPattern: rdnsPat,
			Authenticated: "any", Action: action}}
		addr, _ := netip.AddrFromSlice(ip)
		d := Receive(c, Session{ClientIP: addr, ReverseDNS: rdns}, from, rcpt)
		if !d.Accept || d.Discard {
			return
		}
		at := strings.LastIndexByte(rcpt, '@')
		if at <= 0 || !strings.EqualFold(strings.TrimSuffix(rcpt[at+1:], "."), "example.com") || strings.ContainsAny(rcpt[:at], "@%!") {
			t.Fatalf("relayed %q from %q with rule %+v: %+v", rcpt, from, c.Policy.AccessControl.Receive[0], d)
		}
	})
}
