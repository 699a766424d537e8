package policy

import (
	"net/netip"
	"strings"

	"mailgate/config"
)

// HostMatches reports whether a destination matches a STARTTLS host
// pattern of `config mailsetting starttls`:
//
//	example.com      the recipient domain or the next-hop host is example.com
//	.example.com     the domain or the host is a subdomain of example.com
//	[mx.example.com] the next-hop host is exactly mx.example.com
//
// Comparisons ignore case and trailing dots. An empty pattern matches
// nothing.
func HostMatches(pattern, domain, host string) bool {
	p := normHost(pattern)
	domain, host = normHost(domain), normHost(host)
	switch {
	case p == "":
		return false
	case strings.HasPrefix(p, "[") && strings.HasSuffix(p, "]"):
		exact := normHost(p[1 : len(p)-1])
		return exact != "" && host == exact
	case strings.HasPrefix(p, "."):
		if len(p) == 1 {
			return false
		}
		return strings.HasSuffix(domain, p) || strings.HasSuffix(host, p)
	}
	return domain == p || host == p
}

func normHost(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// UseSTARTTLS decides whether delivery to host (serving domain) tries
// STARTTLS: with include-hosts set only matching destinations do; a
// destination matching exclude-hosts never does, unless it also matches
// include-hosts; everything else does.
func UseSTARTTLS(c *config.Config, domain, host string) bool {
	st := &c.Mailsetting.StartTLS
	matchAny := func(patterns []string) bool {
		for _, p := range patterns {
			if HostMatches(p, domain, host) {
				return true
			}
		}
		return false
	}
	if len(st.IncludeHosts) > 0 {
		return matchAny(st.IncludeHosts)
	}
	return !matchAny(st.ExcludeHosts)
}

// PinnedVersions returns the TLS version range pinned for a destination by
// the first matching `host-protocol` entry: the lowest and highest of its
// ssl-versions (crypto/tls values). ok is false when no entry matches or
// the entry names no known version.
func PinnedVersions(c *config.Config, domain, host string) (min, max uint16, ok bool) {
	for _, hp := range c.Mailsetting.StartTLS.HostProtocol {
		if !HostMatches(hp.Host, domain, host) {
			continue
		}
		return VersionRange(hp.SSLVersions)
	}
	return 0, 0, false
}

// DeliveryProfile returns the TLS profile of the first enabled delivery
// rule that matches the envelope sender, the recipient and the address
// the message is delivered to, with the rule's id. p is nil when no rule
// matches or the matching rule names no (existing) profile: delivery is
// then opportunistic; ruleID is 0 when no rule matched.
//
// Patterns are wildcards or, with their -type regexp, regular
// expressions (MatchPattern). An empty pattern counts as "*", and a
// destination of 0.0.0.0/0
// or ::/0 (or empty) matches any address, IPv4 or IPv6.
func DeliveryProfile(c *config.Config, from, rcpt string, dest netip.Addr) (p *config.TLSProfile, ruleID int) {
	for i := range c.Policy.AccessControl.Delivery {
		r := &c.Policy.AccessControl.Delivery[i]
		if !r.Status || !matchOrAny(r.SenderPattern, r.SenderPatternType, from) || !matchOrAny(r.RecipientPattern, r.RecipientPatternType, rcpt) ||
			!destMatches(r.DestinationIPMask, dest) {
			continue
		}
		return outboundProfile(c, r.TLSProfile), r.ID
	}
	return nil, 0
}

// outboundProfile finds a `config profile tls` entry; nil for "" or an
// unknown name.
func outboundProfile(c *config.Config, name string) *config.TLSProfile {
	if name == "" {
		return nil
	}
	for i := range c.Profile.TLS {
		if c.Profile.TLS[i].Name == name {
			return &c.Profile.TLS[i]
		}
	}
	return nil
}

func matchOrAny(pattern, typ, s string) bool {
	return pattern == "" || MatchPattern(pattern, typ, s)
}

func destMatches(mask string, dest netip.Addr) bool {
	mask = strings.TrimSpace(mask)
	if mask == "" {
		return true
	}
	pfx, err := netip.ParsePrefix(mask)
	if err != nil {
		a, err := netip.ParseAddr(mask)
		if err != nil {
			return false // an invalid mask matches nothing
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Bits() == 0 {
		return true
	}
	return dest.IsValid() && pfx.Contains(dest.Unmap())
}
