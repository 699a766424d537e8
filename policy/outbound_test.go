package policy

import (
	"crypto/tls"
	"net/netip"
	"testing"

	"mailgate/config"
)

func TestHostMatches(t *testing.T) {
	for _, c := range []struct {
		p, domain, host string
		want            bool
	}{
		{"example.com", "example.com", "mx.other.net", true},
		{"example.com", "other.net", "EXAMPLE.COM.", true},
		{"example.com", "sub.example.com", "mx.sub.example.com", false},
		{"Example.COM.", "example.com", "", true},
		{".example.com", "sub.example.com", "mx.other.net", true},
		{".example.com", "other.net", "mx1.example.com", true},
		{".example.com", "example.com", "example.com", false},
		{".example.com", "badexample.com", "mx.badexample.com", false},
		{"[mx.example.com]", "mx.example.com", "other.example.com", false},
		{"[mx.example.com]", "example.com", "MX.example.com.", true},
		{"[mx.example.com]", "example.com", "sub.mx.example.com", false},
		{"[127.0.0.1]", "example.com", "127.0.0.1", true},
		{"", "example.com", "example.com", false},
		{".", "example.com", "example.com", false},
		{"[]", "", "", false},
	} {
		if got := HostMatches(c.p, c.domain, c.host); got != c.want {
			t.Errorf("HostMatches(%q, %q, %q) = %v, want %v", c.p, c.domain, c.host, got, c.want)
		}
	}
}

func TestUseSTARTTLS(t *testing.T) {
	c := config.New()
	if !UseSTARTTLS(c, "example.com", "mx.example.com") {
		t.Error("default must be to use STARTTLS")
	}
	c.Mailsetting.StartTLS.ExcludeHosts = []string{".broken.net", "[mx.old.org]"}
	for _, d := range []struct {
		domain, host string
		want         bool
	}{
		{"broken.net", "mx.broken.net", false},
		{"x.broken.net", "mx.elsewhere.com", false},
		{"old.org", "mx.old.org", false},
		{"old.org", "mx2.old.org", true},
		{"example.com", "mx.example.com", true},
	} {
		if got := UseSTARTTLS(c, d.domain, d.host); got != d.want {
			t.Errorf("exclude only: UseSTARTTLS(%q, %q) = %v", d.domain, d.host, got)
		}
	}
	c.Mailsetting.StartTLS.IncludeHosts = []string{"example.com", "[mx.old.org]"}
	for _, d := range []struct {
		domain, host string
		want         bool
	}{
		{"example.com", "mx.example.com", true},
		{"other.com", "mx.other.com", false}, // include list set: others do not
		{"old.org", "mx.old.org", true},      // include wins over exclude
		{"old.org", "mx2.old.org", false},
		{"broken.net", "mx.broken.net", false},
	} {
		if got := UseSTARTTLS(c, d.domain, d.host); got != d.want {
			t.Errorf("include+exclude: UseSTARTTLS(%q, %q) = %v", d.domain, d.host, got)
		}
	}
}

func TestPinnedVersions(t *testing.T) {
	c := config.New()
	if _, _, ok := PinnedVersions(c, "example.com", "mx.example.com"); ok {
		t.Fatal("nothing pinned by default")
	}
	c.Mailsetting.StartTLS.HostProtocol = []config.HostProtocol{
		{Host: "[mx.legacy.net]", SSLVersions: []string{"tls1_0", "tls1_1"}},
		{Host: ".legacy.net", SSLVersions: []string{"tls1_3", "tls1_2"}},
		{Host: "only12.org", SSLVersions: []string{"tls1_2"}},
		{Host: "empty.org"},
	}
	for _, d := range []struct {
		domain, host string
		min, max     uint16
		ok           bool
	}{
		{"legacy.net", "mx.legacy.net", tls.VersionTLS10, tls.VersionTLS11, true},
		{"a.legacy.net", "mx2.legacy.net", tls.VersionTLS12, tls.VersionTLS13, true},
		{"only12.org", "mx.somewhere", tls.VersionTLS12, tls.VersionTLS12, true},
		{"empty.org", "mx.empty.org", 0, 0, false},
		{"other.org", "mx.other.org", 0, 0, false},
	} {
		min, max, ok := PinnedVersions(c, d.domain, d.host)
		if min != d.min || max != d.max || ok != d.ok {
			t.Errorf("PinnedVersions(%q, %q) = %x %x %v", d.domain, d.host, min, max, ok)
		}
	}
}

func TestDeliveryProfile(t *testing.T) {
	c := config.New()
	c.Profile.TLS = []config.TLSProfile{{Name: "enc", Level: "encrypt"}, {Name: "sec", Level: "secure"}}
	c.Policy.AccessControl.Delivery = []config.DeliveryRule{
		{ID: 1, Status: false, SenderPattern: "*", RecipientPattern: "*", DestinationIPMask: "0.0.0.0/0", TLSProfile: "sec"},
		{ID: 2, Status: true, SenderPattern: "*@corp.example", RecipientPattern: "*@partner.example", DestinationIPMask: "0.0.0.0/0", TLSProfile: "sec"},
		{ID: 3, Status: true, SenderPattern: "*", RecipientPattern: "*", DestinationIPMask: "192.0.2.0/24", TLSProfile: "enc"},
		{ID: 4, Status: true, SenderPattern: "*", RecipientPattern: "*@plain.example", DestinationIPMask: "0.0.0.0/0"},
		{ID: 5, Status: true, RecipientPattern: "*@v6.example", DestinationIPMask: "2001:db8::/32", TLSProfile: "enc"},
		{ID: 6, Status: true, SenderPattern: "*", RecipientPattern: "*@any.example", DestinationIPMask: "::/0", TLSProfile: "enc"},
	}
	v4 := netip.MustParseAddr("198.51.100.7")
	for _, d := range []struct {
		from, rcpt string
		dest       netip.Addr
		profile    string
		id         int
	}{
		{"ceo@corp.example", "bob@PARTNER.example", v4, "sec", 2},
		{"ceo@other.example", "bob@partner.example", v4, "", 0},
		{"", "bob@x.example", netip.MustParseAddr("192.0.2.9"), "enc", 3},
		{"", "bob@x.example", netip.MustParseAddr("::ffff:192.0.2.9"), "enc", 3},
		{"a@b", "x@plain.example", v4, "", 4},
		{"a@b", "x@v6.example", netip.MustParseAddr("2001:db8::25"), "enc", 5},
		{"a@b", "x@v6.example", v4, "", 0},
		{"a@b", "x@any.example", v4, "enc", 6},
		{"a@b", "x@any.example", netip.Addr{}, "enc", 6},
	} {
		p, id := DeliveryProfile(c, d.from, d.rcpt, d.dest)
		name := ""
		if p != nil {
			name = p.Name
		}
		if name != d.profile || id != d.id {
			t.Errorf("DeliveryProfile(%q, %q, %v) = %q rule %d, want %q rule %d", d.from, d.rcpt, d.dest, name, id, d.profile, d.id)
		}
	}
}

// Delivery rules take regular expressions with their -type regexp, as
// receive rules do.
func TestDeliveryRulePatternTypes(t *testing.T) {
	c := cfgWith(t, `
config profile tls
  edit enc
    set level encrypt
  next
end
config policy access-control delivery
  edit 1
    set recipient-pattern-type regexp
    set recipient-pattern @(a|b)\\.partner\\.example$
    set tls-profile enc
  next
  edit 2
    set sender-pattern-type regexp
    set sender-pattern ^ceo@
    set tls-profile enc
  next
end
`)
	dest := netip.MustParseAddr("198.51.100.7")
	for _, tc := range []struct {
		from, rcpt string
		rule       int
	}{
		{"x@corp.example", "u@a.partner.example", 1}, {"x@corp.example", "u@B.Partner.Example", 1},
		{"x@corp.example", "u@c.partner.example", 0}, {"ceo@corp.example", "u@elsewhere.example", 2},
		{"the-ceo@corp.example", "u@elsewhere.example", 0},
	} {
		if _, id := DeliveryProfile(c, tc.from, tc.rcpt, dest); id != tc.rule {
			t.Errorf("%s -> %s: rule %d, want %d", tc.from, tc.rcpt, id, tc.rule)
		}
	}
}
