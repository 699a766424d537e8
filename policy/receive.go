package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"mailgate/config"
)

// Decision is the receive policy's verdict on one recipient of a message.
type Decision struct {
	Accept  bool // accept this recipient (also true for Discard)
	Discard bool // accept, then drop silently
	RuleID  int  // matching receive rule, 0 = default decision
	// Action is the matching rule's action (relay, reject, discard, safe,
	// safe-relay, receive) or "default" when no rule matched.
	Action string
	// The RCPT reply: 250 2.1.5 Ok when accepted.
	Code     int
	Enhanced string
	Text     string
	// Classifier says why, for the history log: "Access Control Relay",
	// "Access Control Reject", "Access Control Discard", "Access Control
	// Safe", "Access Control Receive", "TLS Enforcement", "Authenticated
	// Relay", "Protected Domain", "Relay Denied".
	Classifier string
}

// Reply renders the decision's SMTP reply, e.g. "550 5.7.1 Relaying denied".
func (d Decision) Reply() string {
	return strings.TrimSpace(fmt.Sprintf("%d %s %s", d.Code, d.Enhanced, d.Text))
}

// Classifiers.
const (
	ClassRelay         = "Access Control Relay"
	ClassReject        = "Access Control Reject"
	ClassDiscard       = "Access Control Discard"
	ClassSafe          = "Access Control Safe"
	ClassReceive       = "Access Control Receive"
	ClassTLS           = "TLS Enforcement"
	ClassAuthenticated = "Authenticated Relay"
	ClassProtected     = "Protected Domain"
	ClassRelayDenied   = "Relay Denied"
)

// NullSender is how the null reverse-path (MAIL FROM:<>) is presented to
// sender patterns. The default pattern "*" matches it like any sender; a
// pattern such as "*@example.com" does not.
const NullSender = "<>"

func accept(d Decision) Decision {
	d.Accept, d.Code, d.Enhanced, d.Text = true, 250, "2.1.5", "Ok"
	return d
}

func relayDenied(d Decision) Decision {
	d.Accept, d.Discard = false, false
	d.Code, d.Enhanced, d.Text, d.Classifier = 550, "5.7.1", "Relaying denied", ClassRelayDenied
	return d
}

// IsProtected reports whether domain is one of the protected domains:
// exact match, case-insensitive, a trailing dot ignored on either side.
func IsProtected(c *config.Config, domain string) bool {
	domain = strings.TrimSuffix(domain, ".")
	if c == nil || domain == "" {
		return false
	}
	for _, d := range c.Domain {
		if strings.EqualFold(strings.TrimSuffix(d.Name, "."), domain) {
			return true
		}
	}
	return false
}

// Receive decides one recipient (rcpt, as given in RCPT TO without angle
// brackets) of a message from sender from ("" for the null sender).
//
// The enabled receive rules are tried in order and the first one whose
// sender pattern, recipient pattern, client address, reverse DNS pattern
// and authentication condition all match decides:
//
//   - A rule with a TLS profile whose requirement the session does not
//     meet refuses the recipient with the profile's reply (454 4.7.0 for
//     tempfail, 550 5.7.0 for fail), classifier "TLS Enforcement". This
//     applies to every action except reject, which refuses anyway.
//   - relay and safe-relay accept any recipient; safe and receive accept
//     recipients of protected domains only and refuse others with
//     550 5.7.1 Relaying denied; reject refuses with 550 5.7.1; discard
//     accepts and marks the recipient to be dropped.
//
// When no rule matches, an authenticated client may relay ("Authenticated
// Relay"), recipients of protected domains are accepted ("Protected
// Domain"), and everything else is refused with 550 5.7.1 Relaying denied
// ("Relay Denied"). The sender address never grants relaying.
//
// Acceptance because of a protected domain (no rule, safe, receive) also
// requires the recipient's local part to be free of sender-specified
// routing ('@', '%' or '!'), so that "user%elsewhere@protected.example"
// cannot be used to relay through an internal server that honours it.
func Receive(c *config.Config, s Session, from, rcpt string) Decision {
	if c == nil {
		c = config.New()
	}
	sender := from
	if sender == "" {
		sender = NullSender
	}
	client := s.ClientIP.Unmap()
	for i := range c.Policy.AccessControl.Receive {
		r := &c.Policy.AccessControl.Receive[i]
		if !r.Status || !matchClient(r, client, s.ReverseDNS) || !matchAuth(r.Authenticated, s.Authenticated) {
			continue
		}
		if !MatchPattern(r.SenderPattern, r.SenderPatternType, sender) ||
			!MatchPattern(r.RecipientPattern, r.RecipientPatternType, rcpt) {
			continue
		}
		return applyRule(c, r, s, rcpt)
	}
	d := Decision{Action: "default"}
	switch {
	case s.Authenticated:
		d.Classifier = ClassAuthenticated
		return accept(d)
	case protectedRecipient(c, rcpt):
		d.Classifier = ClassProtected
		return accept(d)
	}
	return relayDenied(d)
}

func applyRule(c *config.Config, r *config.ReceiveRule, s Session, rcpt string) Decision {
	d := Decision{RuleID: r.ID, Action: r.Action}
	if r.TLSProfile != "" && r.Action != "reject" {
		p := findTLSProfile(c, r.TLSProfile)
		if p == nil {
			// A dangling reference cannot pass validation; should one
			// appear anyway, fail closed but temporarily.
			d.Code, d.Enhanced, d.Text, d.Classifier = 454, "4.7.0", "TLS profile "+r.TLSProfile+" not available", ClassTLS
			return d
		}
		if f := CheckTLS(p, s.TLS); f != nil {
			d.Code, d.Enhanced, d.Text, d.Classifier = f.Code, f.Enhanced, f.Text, ClassTLS
			return d
		}
	}
	switch r.Action {
	case "relay":
		d.Classifier = ClassRelay
		return accept(d)
	case "safe-relay":
		d.Classifier = ClassSafe
		return accept(d)
	case "safe", "receive":
		if !protectedRecipient(c, rcpt) {
			return relayDenied(d)
		}
		d.Classifier = ClassSafe
		if r.Action == "receive" {
			d.Classifier = ClassReceive
		}
		return accept(d)
	case "discard":
		d.Classifier = ClassDiscard
		d = accept(d)
		d.Discard = true
		return d
	}
	// reject, and anything unknown: refuse.
	d.Code, d.Enhanced, d.Text, d.Classifier = 550, "5.7.1", "Delivery not authorized, message refused", ClassReject
	return d
}

// protectedRecipient: the recipient's domain is protected and its local
// part carries no source routing.
func protectedRecipient(c *config.Config, rcpt string) bool {
	at := strings.LastIndexByte(rcpt, '@')
	if at <= 0 {
		return false
	}
	if strings.ContainsAny(rcpt[:at], "@%!") {
		return false
	}
	return IsProtected(c, rcpt[at+1:])
}

func findTLSProfile(c *config.Config, name string) *config.TLSProfile {
	for i := range c.Profile.TLS {
		if c.Profile.TLS[i].Name == name {
			return &c.Profile.TLS[i]
		}
	}
	return nil
}

func matchAuth(want string, authenticated bool) bool {
	switch want {
	case "authenticated":
		return authenticated
	case "not-authenticated":
		return !authenticated
	}
	return true // "any" (and unset)
}

// matchClient matches the rule's sender-ip-mask and reverse-dns-pattern.
func matchClient(r *config.ReceiveRule, ip netip.Addr, rdns string) bool {
	return matchIPMask(r.SenderIPMask, ip) && matchReverseDNS(r.ReverseDNSPattern, r.ReverseDNSPatternRegexp == "yes", rdns)
}

// matchIPMask reports whether ip lies in mask (a prefix as the configuration
// stores it, "192.0.2.0/24"). IPv4-mapped IPv6 addresses are unmapped on
// both sides first, so "::ffff:192.0.2.1" is 192.0.2.1. An IPv4 prefix
// never matches an IPv6 client and the other way round, with one
// exception: a /0 of either family ("0.0.0.0/0", the factory value, or
// "::/0") means "any client" and matches both. An empty mask also means
// any client; a mask that does not parse matches nothing.
func matchIPMask(mask string, ip netip.Addr) bool {
	mask = strings.TrimSpace(mask)
	if mask == "" {
		return true
	}
	p, err := netip.ParsePrefix(mask)
	if err != nil {
		a, err2 := netip.ParseAddr(mask)
		if err2 != nil {
			return false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Bits() == 0 {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			// Covers more than the mapped range: compare as IPv6.
			return p.Contains(netip.AddrFrom16(ip.As16()))
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked().Contains(ip)
}

// matchReverseDNS: "*" as a wildcard pattern (or an empty pattern)
// matches any client, even one without a reverse DNS name; any other
// pattern needs a known name. With reverse-dns-pattern-regexp yes the
// pattern is a case-insensitive regular expression.
func matchReverseDNS(pattern string, regexp bool, rdns string) bool {
	if pattern == "" || (pattern == "*" && !regexp) {
		return true
	}
	rdns = strings.TrimSuffix(rdns, ".")
	if rdns == "" {
		return false
	}
	if regexp {
		return MatchPattern(pattern, "regexp", rdns)
	}
	return MatchWildcard(pattern, rdns)
}

// OfferSTARTTLS decides whether STARTTLS is advertised to a client (on the
// SMTP port): not when the client's reverse DNS name contains, as a
// case-insensitive substring, one of system mailserver
// starttls-exclude-hosts, nor when the first enabled receive rule that
// matches the client's address and reverse DNS name (sender, recipient and
// authentication are not known yet and are ignored) has a TLS profile of
// level none. An explicit STARTTLS from such a client is still honoured.
func OfferSTARTTLS(c *config.Config, s Session) bool {
	if c == nil {
		return true
	}
	rdns := strings.ToLower(strings.TrimSuffix(s.ReverseDNS, "."))
	if rdns != "" {
		for _, h := range c.System.Mailserver.StartTLSExclude {
			if h = strings.ToLower(strings.TrimSpace(h)); h != "" && strings.Contains(rdns, h) {
				return false
			}
		}
	}
	client := s.ClientIP.Unmap()
	for i := range c.Policy.AccessControl.Receive {
		r := &c.Policy.AccessControl.Receive[i]
		if !r.Status || !matchClient(r, client, s.ReverseDNS) {
			continue
		}
		if r.TLSProfile == "" {
			return true
		}
		p := findTLSProfile(c, r.TLSProfile)
		return p == nil || p.Level != "none"
	}
	return true
}
