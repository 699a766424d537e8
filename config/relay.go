package config

import (
	"fmt"
	"net/netip"
	"regexp/syntax"
	"strings"
	"unicode"
)

// The open-relay check: no configuration may let a client that did not
// authenticate, from an address anywhere on the internet, relay mail to a
// domain that is not protected. It reads the receive rules the way
// package policy matches them (policy.Receive, policy.MatchPattern):
// wildcard patterns (* and ?) and regular expressions, both
// case-insensitive and matched against the whole recipient address.
//
// A rule that relays (action relay or safe-relay) is safe when one of
// these holds:
//   - it matches authenticated clients only;
//   - its sender-ip-mask is a client network (an IPv4 /8 or an IPv6 /16,
//     or narrower);
//   - its recipient pattern can only match addresses whose domain is a
//     protected domain: a wildcard pattern ending in "@" and a protected
//     domain with no wildcard after the '@', or a regular expression
//     anchored at the end whose every branch ends in "@" and a protected
//     domain.
//
// The sender pattern and the reverse DNS pattern narrow nothing: the
// client chooses its envelope sender, and the owner of an address chooses
// its reverse DNS name.

// Widest client networks a relay rule may name without authentication.
const (
	maxRelayBits4 = 8
	maxRelayBits6 = 16
)

// DisableOpenRelays turns off the receive rules that make c an open relay
// and returns their ids: a configuration stored before the check existed
// still loads, without the hole.
func DisableOpenRelays(c *Config) []int {
	var ids []int
	for i := range c.Policy.AccessControl.Receive {
		r := &c.Policy.AccessControl.Receive[i]
		if openRelay(c, r) {
			r.Status = false
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func openRelay(c *Config, r *ReceiveRule) bool {
	if !r.Status || (r.Action != "relay" && r.Action != "safe-relay") || r.Authenticated == "authenticated" {
		return false
	}
	return !clientNetwork(r.SenderIPMask) && !protectedPattern(c, r.RecipientPatternType, r.RecipientPattern)
}

// OpenRelayRules lists the enabled receive rules that make the
// configuration an open relay, each with what to do about it.
func OpenRelayRules(c *Config) []string {
	var out []string
	for _, r := range c.Policy.AccessControl.Receive {
		if !openRelay(c, &r) {
			continue
		}
		out = append(out, fmt.Sprintf("policy access-control receive %d: open relay: action %s for any unauthenticated client "+
			"(sender-ip-mask %s) to recipient-pattern %q, which matches domains that are not protected; "+
			"narrow it with set sender-ip-mask to your network (at most a /%d, IPv6 /%d), set authenticated authenticated, "+
			"or a recipient-pattern such as *@%s",
			r.ID, r.Action, orAny(r.SenderIPMask), r.RecipientPattern, maxRelayBits4, maxRelayBits6, exampleDomain(c)))
	}
	return out
}

func orAny(mask string) string {
	if strings.TrimSpace(mask) == "" {
		return "0.0.0.0/0"
	}
	return mask
}

func exampleDomain(c *Config) string {
	if len(c.Domain) > 0 {
		return strings.TrimSuffix(c.Domain[0].Name, ".")
	}
	return "example.com"
}

// clientNetwork reports whether mask names a client network rather than
// "anywhere": an empty mask and a /0 match every client (as
// policy.matchIPMask reads them), and so does anything wider than
// maxRelayBits.
func clientNetwork(mask string) bool {
	p, err := netip.ParsePrefix(strings.TrimSpace(mask))
	if err != nil {
		// A bare address is a /32 or /128 to the matcher; anything else
		// (empty, unparsable) is treated as anywhere.
		_, err = netip.ParseAddr(strings.TrimSpace(mask))
		return err == nil
	}
	bits := p.Bits()
	if p.Addr().Is4In6() {
		bits -= 96
	}
	if p.Addr().Is4() || p.Addr().Is4In6() {
		return bits >= maxRelayBits4
	}
	return bits >= maxRelayBits6
}

// protectedPattern reports whether a recipient pattern can only match
// addresses of protected domains.
func protectedPattern(c *Config, typ, pattern string) bool {
	if typ == "regexp" {
		re, err := syntax.Parse("(?i)"+pattern, syntax.Perl)
		if err != nil {
			return false
		}
		tails, ok := anchoredTails(re.Simplify())
		if !ok || len(tails) == 0 {
			return false
		}
		for _, t := range tails {
			if !protectedTail(c, t) {
				return false
			}
		}
		return true
	}
	// The matched address ends with what follows the last wildcard.
	tail := pattern[strings.LastIndexAny(pattern, "*?")+1:]
	return protectedTail(c, tail)
}

// protectedTail: every address ending in tail has a protected domain. The
// last '@' of the address is the last '@' of tail, so the domain is what
// follows it, exactly.
func protectedTail(c *Config, tail string) bool {
	at := strings.LastIndexByte(tail, '@')
	if at < 0 {
		return false
	}
	// A trailing dot is dropped, as delivery drops it.
	domain := strings.TrimSuffix(tail[at+1:], ".")
	if domain == "" {
		return false
	}
	for _, d := range c.Domain {
		if strings.EqualFold(strings.TrimSuffix(d.Name, "."), domain) {
			return true
		}
	}
	return false
}

// anchoredTails returns the literal endings one of which every string
// matched by re ends with, for a regexp that is anchored at the end of the
// text; ok is false when re is not anchored there.
func anchoredTails(re *syntax.Regexp) (tails []string, ok bool) {
	switch re.Op {
	case syntax.OpCapture:
		return anchoredTails(re.Sub[0])
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			t, ok := anchoredTails(s)
			if !ok {
				return nil, false
			}
			tails = append(tails, t...)
		}
		return tails, true
	case syntax.OpConcat:
		n := len(re.Sub)
		if n > 0 && re.Sub[n-1].Op == syntax.OpEndText {
			return literalTails(re.Sub[:n-1]), true
		}
		if n > 0 {
			// The anchor may sit inside a last group: x(a$|b$).
			if t, ok := anchoredTails(re.Sub[n-1]); ok {
				return prefixAll(literalTails(re.Sub[:n-1]), t), true
			}
		}
	}
	return nil, false
}

// literalTails: the endings one of which every string matched by the
// concatenation subs ends with ("" when the last element is not literal).
// It stops as soon as every ending holds an '@', which is all the caller
// needs.
func literalTails(subs []*syntax.Regexp) []string {
	cur := []string{""}
	for i := len(subs) - 1; i >= 0; i-- {
		t, fixed := fixedStrings(subs[i])
		if !fixed {
			return cur
		}
		cur = prefixAll(t, cur)
		if len(cur) > 64 {
			return []string{""}
		}
		all := true
		for _, s := range cur {
			all = all && strings.Contains(s, "@")
		}
		if all {
			return cur
		}
	}
	return cur
}

// fixedStrings lists the strings re matches when it matches only a few
// fixed strings (literals, groups and alternations of them), in lower
// case.
func fixedStrings(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		return []string{strings.Map(unicode.ToLower, string(re.Rune))}, true
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpCapture:
		return fixedStrings(re.Sub[0])
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			t, ok := fixedStrings(s)
			if !ok {
				return nil, false
			}
			out = append(out, t...)
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, s := range re.Sub {
			t, ok := fixedStrings(s)
			if !ok {
				return nil, false
			}
			out = prefixAll(out, t)
		}
		return out, true
	case syntax.OpCharClass:
		// A class of one letter in both cases, as (?i) makes of [a].
		size := 0
		for i := 0; i+1 < len(re.Rune); i += 2 {
			size += int(re.Rune[i+1]-re.Rune[i]) + 1
		}
		if size <= 4 {
			var out []string
			seen := map[rune]bool{}
			for i := 0; i+1 < len(re.Rune); i += 2 {
				for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
					if l := unicode.ToLower(r); !seen[l] {
						seen[l] = true
						out = append(out, string(l))
					}
				}
			}
			if len(out) == 1 {
				return out, true
			}
		}
	}
	return nil, false
}

// prefixAll returns every a+b.
func prefixAll(as, bs []string) []string {
	out := make([]string, 0, len(as)*len(bs))
	for _, a := range as {
		for _, b := range bs {
			out = append(out, a+b)
		}
	}
	return out
}
