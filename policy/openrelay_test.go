package policy

import (
	"net/netip"
	"strings"
	"testing"

	"mailgate/config"
	"mailgate/config/configtest"
)

// relayTricks are recipients an outsider tries to relay through a gateway
// protecting example.com and example.org.
var relayTricks = []string{
	"victim@elsewhere.test",
	"VICTIM@ELSEWHERE.TEST",
	"victim@elsewhere.test.",
	"victim%elsewhere.test@example.com",
	"victim@elsewhere.test@example.com",
	"@example.com:victim@elsewhere.test",
	"elsewhere.test!victim@example.com",
	`"victim@elsewhere.test"@example.com`,
	`"victim@elsewhere.test"`,
	"victim@[192.0.2.1]",
	"victim@example.com.elsewhere.test",
	"victim@notexample.com",
	"victim@mail.example.com",
	"victim@example.co",
	"victim@example.comx",
	"victim@example.coz",
	"victim@example-com",
	"victim@example.com.",
	"victim@EXAMPLE.COM",
	"postmaster@elsewhere.test",
	"sales@example.com",
	"victim@example.net",
	"victim@[IPv6:2001:db8::1]",
	"victim",
}

// deliveredTo is the domain a recipient would be delivered to: what
// follows its last '@' (queue.domainOf), without a trailing dot.
func deliveredTo(rcpt string) string {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(rcpt[at+1:], "."))
}

// The open-relay check (config.OpenRelayRules) against the matcher: for
// every rule it lets through, no outsider gets a recipient accepted that
// goes to a domain that is not protected, whatever sender, reverse DNS
// name and TLS the outsider chooses; for every rule it refuses, some
// outsider does.
func TestOpenRelayCheckAgainstMatcher(t *testing.T) {
	outsiders := []Session{
		{ClientIP: ip4, ReverseDNS: "mx.example.com", TLS: tls13},
		{ClientIP: netip.MustParseAddr("3fff::1"), ReverseDNS: "host.example.com", TLS: tls13},
		{ClientIP: netip.MustParseAddr("100.64.0.1"), TLS: tls13},
	}
	protected := map[string]bool{"example.com": true, "example.org": true}
	for _, tc := range configtest.RelayRuleShapes {
		c := cfgWith(t, configtest.RelayShapeConfig(tc.Lines))
		flagged := len(config.OpenRelayRules(c)) > 0
		if flagged != tc.Unsafe {
			t.Errorf("rule %q: check says unsafe=%v, shape says %v", tc.Lines, flagged, tc.Unsafe)
		}
		var relayed []string
		for _, s := range outsiders {
			for _, from := range []string{"ceo@example.com", "", "x@elsewhere.test"} {
				for _, rcpt := range relayTricks {
					d := Receive(c, s, from, rcpt)
					if d.Accept && !d.Discard && !protected[deliveredTo(rcpt)] {
						relayed = append(relayed, rcpt)
					}
				}
			}
		}
		if !flagged && len(relayed) > 0 {
			t.Errorf("rule %q passes the check, but an outsider relays to %q", tc.Lines, relayed)
		}
		if flagged && len(relayed) == 0 && !strings.Contains(tc.Lines, "sender-ip-mask") && !strings.Contains(tc.Lines, "(?m)") {
			// Masks wider than a /8 are refused on principle even where
			// the outsiders above are outside them, and so is a
			// multi-line regular expression.
			t.Errorf("rule %q is refused, but no outsider relays through it", tc.Lines)
		}
	}
}

// reverse-dns-pattern-regexp yes reads reverse-dns-pattern as a regular
// expression (case-insensitive); no keeps wildcards.
func TestReverseDNSPatternRegexp(t *testing.T) {
	c := cfgWith(t, domains+`
config policy access-control receive
  edit 1
    set reverse-dns-pattern ^mx[0-9]+\\.partner\\.example$
    set reverse-dns-pattern-regexp yes
    set action reject
  next
  edit 2
    set reverse-dns-pattern *.wild.example
    set action reject
  next
end
`)
	for _, tc := range []struct {
		rdns string
		rule int
	}{
		{"mx12.partner.example", 1}, {"MX1.Partner.Example.", 1}, {"mxa.partner.example", 0}, {"mx1.partner.example.org", 0},
		{"a.wild.example", 2}, {"", 0},
	} {
		d := Receive(c, Session{ClientIP: ip4, ReverseDNS: tc.rdns}, "a@elsewhere.test", "b@example.com")
		if d.RuleID != tc.rule {
			t.Errorf("reverse DNS %q: rule %d, want %d", tc.rdns, d.RuleID, tc.rule)
		}
	}
}
